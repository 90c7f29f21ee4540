import Logging
import NIOCore
import NIOEmbedded
@testable import PunchDiscovery
import PunchWire
import Testing

/// The client's channel handler on an `EmbeddedChannel`, with a virtual clock.
@Suite struct STUNClientHandlerTests {
    let server = try! IPEndpoint("203.0.113.10:3478")

    func makeChannel(_ configuration: STUNClientConfiguration = STUNClientConfiguration()) throws -> (EmbeddedChannel, STUNClientHandler) {
        let channel = EmbeddedChannel()
        let handler = STUNClientHandler(configuration: configuration, logger: Logger(label: "test"))
        try channel.pipeline.syncOperations.addHandler(handler)
        return (channel, handler)
    }

    func start(_ handler: STUNClientHandler, on channel: EmbeddedChannel) throws -> (STUNMessage, EventLoopFuture<STUNTransactionOutcome>) {
        let request = STUNMessage(type: .bindingRequest)
        let promise = channel.eventLoop.makePromise(of: STUNTransactionOutcome.self)
        handler.start(id: request.transactionID, request: try request.encoded(), destination: server, expectedSource: server,
                      expectation: .response, promise: promise)
        return (request, promise.futureResult)
    }

    func envelope(_ bytes: [UInt8], from source: IPEndpoint) throws -> AddressedEnvelope<ByteBuffer> {
        AddressedEnvelope(remoteAddress: try source.socketAddress(), data: ByteBuffer(bytes: bytes))
    }

    @Test func retransmitsOnScheduleAndCompletesOnTheMatchingResponse() async throws {
        let (channel, handler) = try makeChannel()
        let (request, future) = try start(handler, on: channel)
        let first = try #require(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self))
        #expect(first.remoteAddress == (try server.socketAddress()))
        #expect(try STUNMessage.decode(datagram: Array(first.data.readableBytesView)).transactionID == request.transactionID)

        channel.embeddedEventLoop.advanceTime(by: .milliseconds(499))
        #expect(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) == nil)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        let second = try #require(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self))
        #expect(second.data == first.data, "a retransmission is the same request")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(999))
        #expect(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) == nil, "the interval doubled")

        let response = STUNMessage(type: .bindingSuccessResponse, transactionID: request.transactionID, attributes: [.xorMappedAddress(try IPEndpoint("198.51.100.1:1"))])
        try channel.writeInbound(try envelope(try response.encoded(), from: server))
        let outcome = try await future.get()
        #expect(outcome.message == response && outcome.source == server && outcome.roundTrip == .milliseconds(1499))
        #expect(try channel.readInbound(as: AddressedEnvelope<ByteBuffer>.self) == nil, "a matched response is consumed")
        channel.embeddedEventLoop.advanceTime(by: .seconds(60))
        #expect(try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) == nil, "no retransmission after completion")
        #expect(handler.statistics.retransmissions == 1 && handler.statistics.completed == 1)
    }

    @Test func failsWithTimeoutAfterRmTimesRTO() async throws {
        let (channel, handler) = try makeChannel()
        let (_, future) = try start(handler, on: channel)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(39_499))
        var sent = 0
        while try channel.readOutbound(as: AddressedEnvelope<ByteBuffer>.self) != nil { sent += 1 }
        #expect(sent == 7, "Rc = 7")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        await #expect(throws: DiscoveryError(.stunTimeout, "")) { try await future.get() }
    }

    @Test func nonSTUNDatagramsAndForeignRequestsGoOnDownThePipeline() throws {
        let (channel, handler) = try makeChannel()
        let peer = try IPEndpoint("198.51.100.9:4000")
        try channel.writeInbound(try envelope(Array("punch".utf8), from: peer))
        try channel.writeInbound(try envelope(try STUNMessage(type: .bindingRequest).encoded(), from: peer))
        // A STUN response no transaction waits for is consumed and counted, not passed on.
        try channel.writeInbound(try envelope(try STUNMessage(type: .bindingSuccessResponse).encoded(), from: peer))
        // Looks like STUN (cookie) but is broken: dropped and counted.
        var broken = try STUNMessage(type: .bindingSuccessResponse).encoded(fingerprint: true)
        broken[broken.count - 1] ^= 1
        try channel.writeInbound(try envelope(broken, from: peer))
        let first = try channel.readInbound(as: AddressedEnvelope<ByteBuffer>.self)
        let second = try channel.readInbound(as: AddressedEnvelope<ByteBuffer>.self)
        #expect(first.map { Array($0.data.readableBytesView) } == Array("punch".utf8))
        #expect(second.map { STUNMessage.looksLikeSTUN($0.data.readableBytesView) } == true)
        #expect(try channel.readInbound(as: AddressedEnvelope<ByteBuffer>.self) == nil)
        let statistics = handler.statistics
        #expect(statistics.nonSTUN == 1 && statistics.passedOn == 1 && statistics.droppedUnknownTransaction == 1 && statistics.droppedMalformed == 1)
    }

    @Test func closingTheChannelFailsOutstandingTransactions() async throws {
        let (channel, handler) = try makeChannel()
        let (_, future) = try start(handler, on: channel)
        _ = try channel.finish()
        await #expect(throws: DiscoveryError(.stunClientClosed, "")) { try await future.get() }
    }
}

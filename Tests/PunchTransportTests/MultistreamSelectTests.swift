import NIOCore
import NIOEmbedded
import PunchWire
import Testing

@testable import PunchTransport

/// One multistream-select message: varint length (newline included), the text, `\n`.
private func message(_ text: String) -> [UInt8] {
    Varint.encode(UInt64(text.utf8.count + 1)) + Array(text.utf8) + [UInt8(ascii: "\n")]
}

private func buffer(_ parts: [UInt8]...) -> ByteBuffer {
    ByteBuffer(bytes: parts.flatMap { $0 })
}

private let header = message(MultistreamSelectStateMachine.header)

// MARK: - State machine

@Suite struct MultistreamSelectStateMachineTests {
    typealias Machine = MultistreamSelectStateMachine

    @Test func headerIsNineteenBytesWithItsLengthAndNewline() {
        // 0x13 = 19: "/multistream/1.0.0" is 18 bytes, plus the newline.
        #expect(header == [0x13] + Array("/multistream/1.0.0\n".utf8))
        #expect(message("/noise") == [0x07] + Array("/noise\n".utf8))
    }

    @Test func dialerPipelinesHeaderAndFirstProposalThenSelects() throws {
        var (machine, first) = Machine.dialer(proposing: ["/noise", "/tls/1.0.0"])
        #expect(first == .send(buffer(header, message("/noise"))))
        #expect(try machine.receive(buffer(header)) == .wait)
        #expect(try machine.receive(buffer(message("/noise"))) == .selected(protocol: "/noise", send: ByteBuffer()))
        #expect(machine.leftover.readableBytes == 0)
    }

    @Test func listenerSendsHeaderThenEchoesASupportedProposal() throws {
        var (machine, first) = Machine.listener(supporting: ["/noise", "/yamux/1.0.0"])
        #expect(first == .send(buffer(header)))
        #expect(
            try machine.receive(buffer(header, message("/yamux/1.0.0")))
                == .selected(protocol: "/yamux/1.0.0", send: buffer(message("/yamux/1.0.0"))))
        #expect(machine.leftover.readableBytes == 0)
    }

    @Test func dialerProposesTheNextProtocolAfterNa() throws {
        var (machine, _) = Machine.dialer(proposing: ["/a/1", "/b/1"])
        #expect(try machine.receive(buffer(header, message("na"))) == .send(buffer(message("/b/1"))))
        #expect(try machine.receive(buffer(message("/b/1"))) == .selected(protocol: "/b/1", send: ByteBuffer()))
    }

    @Test func dialerFailsWhenNoProposalIsLeft() throws {
        var (machine, _) = Machine.dialer(proposing: ["/a/1", "/b/1"])
        _ = try machine.receive(buffer(header, message("na")))
        #expect(throws: TransportError(.multistreamNoProtocol, "")) { try machine.receive(buffer(message("na"))) }
    }

    @Test func dialerRejectsAnAnswerThatIsNeitherItsProposalNorNa() throws {
        var (machine, _) = Machine.dialer(proposing: ["/a/1"])
        #expect(throws: TransportError(.multistreamUnexpected, "")) {
            try machine.receive(buffer(header, message("/b/1")))
        }
    }

    @Test func listenerAnswersNaToUnknownProtocolsAndLs() throws {
        var (machine, _) = Machine.listener(supporting: ["/a/1"])
        #expect(try machine.receive(buffer(header, message("/unknown/1"))) == .send(buffer(message("na"))))
        #expect(try machine.receive(buffer(message("ls"))) == .send(buffer(message("na"))))
        #expect(try machine.receive(buffer(message("/a/1"))) == .selected(protocol: "/a/1", send: buffer(message("/a/1"))))
    }

    @Test func listenerGivesUpAfterMaximumProposals() throws {
        var configuration = Machine.Configuration()
        configuration.maximumProposals = 3
        var (machine, _) = Machine.listener(supporting: ["/a/1"], configuration: configuration)
        #expect(try machine.receive(buffer(header, message("/x/1"))) == .send(buffer(message("na"))))
        #expect(try machine.receive(buffer(message("/x/2"))) == .send(buffer(message("na"))))
        #expect(throws: TransportError(.multistreamUnexpected, "")) { try machine.receive(buffer(message("/x/3"))) }

        // The last allowed proposal may still be a supported one.
        var (accepting, _) = Machine.listener(supporting: ["/a/1"], configuration: configuration)
        #expect(
            try accepting.receive(buffer(header, message("/x/1"), message("/x/2"), message("/a/1")))
                == .selected(protocol: "/a/1", send: buffer(message("na"), message("na"), message("/a/1"))))
    }

    @Test func httpRequestLineIsRejectedAsABadHeader() throws {
        // 'G' reads as a length of 71: the peer cannot be sending the 19-byte header, so there is
        // no point waiting for 71 bytes (the timeout) before refusing it.
        var (listener, _) = Machine.listener(supporting: ["/noise"])
        #expect(throws: TransportError(.multistreamBadHeader, "")) {
            try listener.receive(ByteBuffer(string: "GET / HTTP/1.1\r\n"))
        }
        var (dialer, _) = Machine.dialer(proposing: ["/noise"])
        #expect(throws: TransportError(.multistreamBadHeader, "")) {
            try dialer.receive(ByteBuffer(bytes: [0x16, 0x03, 0x01]))  // a TLS record header
        }
    }

    @Test func wellFramedLineOtherThanTheHeaderIsABadHeader() throws {
        var (machine, _) = Machine.listener(supporting: ["/noise"])
        #expect(throws: TransportError(.multistreamBadHeader, "")) {
            try machine.receive(buffer(message("/multistream/2.0.0")))
        }
    }

    @Test func oversizedLengthPrefixIsRejectedBeforeTheBody() throws {
        let tooLong = Varint.encode(UInt64(Machine.Configuration().maximumMessageLength + 1))
        var (listener, _) = Machine.listener(supporting: ["/noise"])
        _ = try listener.receive(buffer(header))
        #expect(throws: TransportError(.multistreamMalformed, "")) { try listener.receive(buffer(tooLong)) }

        var (dialer, _) = Machine.dialer(proposing: ["/noise"])
        #expect(throws: TransportError(.multistreamMalformed, "")) { try dialer.receive(buffer(tooLong)) }

        var configuration = Machine.Configuration()
        configuration.maximumMessageLength = 8
        var (small, _) = Machine.listener(supporting: ["/a"], configuration: configuration)
        // The header itself (19 bytes) is over this limit.
        #expect(throws: TransportError(.multistreamMalformed, "")) { try small.receive(buffer([0x13])) }
    }

    @Test func overlongVarintIsMalformed() throws {
        var (machine, _) = Machine.listener(supporting: ["/noise"])
        _ = try machine.receive(buffer(header))
        #expect(throws: TransportError(.multistreamMalformed, "")) {
            try machine.receive(buffer(Array(repeating: 0xFF, count: 10)))
        }
    }

    @Test func messageWithoutTrailingNewlineIsMalformed() throws {
        var (machine, _) = Machine.listener(supporting: ["/noise"])
        _ = try machine.receive(buffer(header))
        #expect(throws: TransportError(.multistreamMalformed, "")) {
            try machine.receive(buffer([6], Array("/noise".utf8)))
        }
    }

    @Test func emptyMessageAndEmbeddedNewlineAreMalformed() throws {
        var (empty, _) = Machine.listener(supporting: ["/noise"])
        _ = try empty.receive(buffer(header))
        #expect(throws: TransportError(.multistreamMalformed, "")) { try empty.receive(buffer([0])) }

        var (twoLines, _) = Machine.listener(supporting: ["/noise"])
        _ = try twoLines.receive(buffer(header))
        #expect(throws: TransportError(.multistreamMalformed, "")) {
            try twoLines.receive(buffer([6], Array("/a\n/b\n".utf8)))
        }
    }

    @Test func bytesAfterTheFinalAnswerStayInLeftover() throws {
        let early = Array("first protocol bytes".utf8)
        var (dialer, _) = Machine.dialer(proposing: ["/noise"])
        #expect(try dialer.receive(buffer(header, message("/noise"), early)) == .selected(protocol: "/noise", send: ByteBuffer()))
        #expect(dialer.leftover == buffer(early))

        var (listener, _) = Machine.listener(supporting: ["/noise"])
        // The leftover looks like negotiation messages, but belongs to the protocol.
        let lookalike = message("/noise") + early
        #expect(
            try listener.receive(buffer(header, message("/noise"), lookalike))
                == .selected(protocol: "/noise", send: buffer(message("/noise"))))
        #expect(listener.leftover == buffer(lookalike))
    }

    @Test func byteAtATimeInputGivesTheSameResult() throws {
        let trailing = Array("xyz".utf8)
        var (dialer, _) = Machine.dialer(proposing: ["/a/1", "/b/1"])
        var dialerActions: [Machine.Action] = []
        for byte in header + message("na") + message("/b/1") + trailing {
            dialerActions.append(try dialer.receive(buffer([byte])))
        }
        // Everything waits except the byte that completes `na` (next proposal) and the one that
        // completes the answer; the bytes after it go to leftover.
        #expect(dialerActions.filter { $0 != .wait } == [.send(buffer(message("/b/1"))), .selected(protocol: "/b/1", send: ByteBuffer())])
        let answerEnd = header.count + message("na").count + message("/b/1").count
        #expect(dialerActions[answerEnd - 1] == .selected(protocol: "/b/1", send: ByteBuffer()))
        #expect(dialer.leftover == buffer(trailing))

        var (listener, _) = Machine.listener(supporting: ["/b/1"])
        var listenerActions: [Machine.Action] = []
        for byte in header + message("/a/1") + message("/b/1") + trailing {
            listenerActions.append(try listener.receive(buffer([byte])))
        }
        #expect(
            listenerActions.filter { $0 != .wait } == [
                .send(buffer(message("na"))), .selected(protocol: "/b/1", send: buffer(message("/b/1"))),
            ])
        #expect(listener.leftover == buffer(trailing))
    }

    @Test func byteAtATimeGarbageFailsAsSoonAsItIsKnown() throws {
        var (machine, _) = Machine.listener(supporting: ["/a"])
        _ = try machine.receive(buffer(header))
        let bad = [UInt8(3)] + Array("abc".utf8)
        for byte in bad.dropLast() {
            #expect(try machine.receive(buffer([byte])) == .wait)
        }
        #expect(throws: TransportError(.multistreamMalformed, "")) { try machine.receive(buffer([bad.last!])) }
    }
}

// MARK: - Handler

/// Holds the bytes that reach it; the configurator installs it for the chosen protocol.
private final class ProtocolRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var received = ByteBuffer()
    var reads = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        reads += 1
        received.writeBuffer(&bytes)
    }
}

@Suite struct MultistreamSelectHandlerTests {
    typealias Handler = MultistreamSelectHandler<String>

    /// An active embedded channel negotiating as `role`; the configurator adds `recorder`.
    private static func channel(
        _ role: Handler.Role, recorder: ProtocolRecorder = ProtocolRecorder(),
        configure: ((String, Channel) -> EventLoopFuture<Void>)? = nil
    ) throws -> (EmbeddedChannel, Handler) {
        let channel = EmbeddedChannel()
        let handler = Handler(role: role, eventLoop: channel.eventLoop) { chosen, channel in
            let ready = configure?(chosen, channel) ?? channel.eventLoop.makeSucceededVoidFuture()
            let boundRecorder = NIOLoopBound(recorder, eventLoop: channel.eventLoop)
            return ready.flatMapThrowing {
                try channel.pipeline.syncOperations.addHandler(boundRecorder.value)
                return chosen
            }
        }
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 4001)).wait()
        return (channel, handler)
    }

    private static func outbound(_ channel: EmbeddedChannel) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes += buffer.readableBytesView }
        return bytes
    }

    private static func isInPipeline(_ channel: EmbeddedChannel) -> Bool {
        (try? channel.pipeline.syncOperations.handler(type: Handler.self)) != nil
    }

    @Test func dialerNegotiatesRunsTheConfiguratorAndRemovesItself() throws {
        let recorder = ProtocolRecorder()
        let (channel, handler) = try Self.channel(.dialer(["/a/1", "/b/1"]), recorder: recorder)
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        #expect(try Self.outbound(channel) == header + message("/a/1"))

        try channel.writeInbound(buffer(header, message("na")))
        #expect(try Self.outbound(channel) == message("/b/1"))
        #expect(Self.isInPipeline(channel))

        try channel.writeInbound(buffer(message("/b/1")))
        #expect(try handler.negotiationResult.wait() == "/b/1")
        #expect(!Self.isInPipeline(channel))
        #expect((try? channel.pipeline.syncOperations.handler(type: ProtocolRecorder.self)) === recorder)
        #expect(try Self.outbound(channel).isEmpty)

        // Later bytes go straight to the protocol's handler.
        try channel.writeInbound(ByteBuffer(string: "later"))
        #expect(recorder.received == ByteBuffer(string: "later"))
        #expect(channel.isActive)
    }

    @Test func listenerAnswersAndHandsOverTheChannel() throws {
        let recorder = ProtocolRecorder()
        let (channel, handler) = try Self.channel(.listener(["/a/1"]), recorder: recorder)
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        #expect(try Self.outbound(channel) == header)
        try channel.writeInbound(buffer(header, message("/x/1"), message("/a/1")))
        #expect(try Self.outbound(channel) == message("na") + message("/a/1"))
        #expect(try handler.negotiationResult.wait() == "/a/1")
        #expect(!Self.isInPipeline(channel))
    }

    @Test func bytesInTheSameReadAsTheAnswerReachTheNextHandler() throws {
        let recorder = ProtocolRecorder()
        let (channel, handler) = try Self.channel(.dialer(["/a/1"]), recorder: recorder)
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try channel.writeInbound(buffer(header, message("/a/1"), Array("pipelined".utf8)))
        #expect(try handler.negotiationResult.wait() == "/a/1")
        #expect(recorder.received == ByteBuffer(string: "pipelined"))
        #expect(recorder.reads == 1)
    }

    @Test func bytesArrivingWhileConfiguringAreHeldAndDeliveredInOrder() throws {
        final class Gate { var promise: EventLoopPromise<Void>? }
        let gate = Gate()
        let recorder = ProtocolRecorder()
        let (channel, handler) = try Self.channel(.dialer(["/a/1"]), recorder: recorder) { _, channel in
            let promise = channel.eventLoop.makePromise(of: Void.self)
            gate.promise = promise
            return promise.futureResult
        }
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try channel.writeInbound(buffer(header, message("/a/1"), Array("one,".utf8)))
        try channel.writeInbound(ByteBuffer(string: "two,"))
        try channel.writeInbound(ByteBuffer(string: "three"))
        // The configurator is still running: nothing is passed on (or lost) yet.
        #expect(recorder.reads == 0)
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
        #expect(Self.isInPipeline(channel))

        try #require(gate.promise).succeed()
        channel.embeddedEventLoop.run()
        #expect(try handler.negotiationResult.wait() == "/a/1")
        #expect(recorder.received == ByteBuffer(string: "one,two,three"))
        #expect(!Self.isInPipeline(channel))
    }

    @Test func garbageClosesTheChannelAndFailsTheResult() throws {
        let (channel, handler) = try Self.channel(.listener(["/a/1"]))
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        _ = try Self.outbound(channel)
        #expect(throws: TransportError(.multistreamBadHeader, "")) {
            try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n"))
        }
        #expect(!channel.isActive)
        #expect(throws: TransportError(.multistreamBadHeader, "")) { try handler.negotiationResult.wait() }
    }

    @Test func malformedLineClosesTheChannelWithATypedError() throws {
        let (channel, handler) = try Self.channel(.dialer(["/a/1"]))
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        #expect(throws: TransportError(.multistreamMalformed, "")) {
            try channel.writeInbound(buffer(header, [4], Array("/a/1".utf8)))
        }
        #expect(!channel.isActive)
        #expect(throws: TransportError(.multistreamMalformed, "")) { try handler.negotiationResult.wait() }
    }

    @Test func timeoutClosesTheChannelOnTheVirtualClock() throws {
        let (channel, handler) = try Self.channel(.listener(["/a/1"]))
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try channel.writeInbound(buffer(header))
        channel.embeddedEventLoop.advanceTime(by: Handler.defaultTimeout - .milliseconds(1))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(!channel.isActive)
        #expect(throws: TransportError(.multistreamTimeout, "")) { try channel.throwIfErrorCaught() }
        #expect(throws: TransportError(.multistreamTimeout, "")) { try handler.negotiationResult.wait() }
    }

    @Test func completedNegotiationDoesNotTimeOut() throws {
        let (channel, handler) = try Self.channel(.dialer(["/a/1"]))
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try channel.writeInbound(buffer(header, message("/a/1")))
        #expect(try handler.negotiationResult.wait() == "/a/1")
        channel.embeddedEventLoop.advanceTime(by: .seconds(60))
        try channel.throwIfErrorCaught()
        #expect(channel.isActive)
    }

    @Test func channelGoingInactiveFailsTheResult() throws {
        let (channel, handler) = try Self.channel(.dialer(["/a/1"]))
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try channel.writeInbound(buffer(header))
        try channel.close().wait()
        #expect(throws: TransportError(.connectionClosed, "")) { try handler.negotiationResult.wait() }
    }

    @Test func failingConfiguratorFailsTheResultAndCloses() throws {
        struct Refused: Error {}
        let (channel, handler) = try Self.channel(.dialer(["/a/1"])) { _, channel in
            channel.eventLoop.makeFailedFuture(Refused())
        }
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        #expect(throws: Refused.self) { try channel.writeInbound(buffer(header, message("/a/1"))) }
        #expect(throws: Refused.self) { try handler.negotiationResult.wait() }
        #expect(!channel.isActive)
    }
}

import NIOCore

/// Runs multistream-select on a channel, then lets the caller set up the pipeline for the
/// protocol chosen, and removes itself.
///
/// Bytes that arrive after the final negotiation message (a peer may pipeline its first
/// protocol message behind its answer) are held until the caller's configuration has finished
/// and then passed on, so nothing is lost.
///
/// ```swift
/// let negotiation = MultistreamSelectHandler(role: .dialer(["/noise"]), eventLoop: channel.eventLoop) { chosen, channel in
///     channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(NoiseHandler(...)) }
/// }
/// try channel.pipeline.syncOperations.addHandler(negotiation)
/// ```
public final class MultistreamSelectHandler<Output: Sendable>: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Which side of the negotiation this is.
    public enum Role: Sendable {
        /// Proposes the protocols in order of preference.
        case dialer([String])
        /// Accepts any of these protocols.
        case listener(Set<String>)
    }

    /// The default time a negotiation may take.
    public static var defaultTimeout: TimeAmount { .seconds(10) }

    private let role: Role
    private let configuration: MultistreamSelectStateMachine.Configuration
    private let timeout: TimeAmount
    private let configurator: (String, Channel) -> EventLoopFuture<Output>
    private let resultPromise: EventLoopPromise<Output>
    private var machine: MultistreamSelectStateMachine?
    private var timeoutTask: Scheduled<Void>?
    private var phase = Phase.idle

    private enum Phase {
        case idle, negotiating, configuring, finished
    }

    /// The configurator's output once negotiation and configuration are done, or the error.
    public var negotiationResult: EventLoopFuture<Output> { resultPromise.futureResult }

    /// Creates the handler.
    ///
    /// - Parameters:
    ///   - role: dialer (with proposals) or listener (with supported protocols).
    ///   - configuration: message and proposal limits.
    ///   - timeout: how long negotiation may take before the channel is closed.
    ///   - eventLoop: the channel's event loop.
    ///   - configurator: called on the event loop with the chosen protocol; it adds the handlers
    ///     that speak it. Inbound bytes are held until its future completes.
    public init(
        role: Role,
        configuration: MultistreamSelectStateMachine.Configuration = .init(),
        timeout: TimeAmount = MultistreamSelectHandler.defaultTimeout,
        eventLoop: EventLoop,
        configurator: @escaping (String, Channel) -> EventLoopFuture<Output>
    ) {
        self.role = role
        self.configuration = configuration
        self.timeout = timeout
        self.configurator = configurator
        self.resultPromise = eventLoop.makePromise()
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard case .idle = phase else { return }
        phase = .negotiating
        let (machine, action): (MultistreamSelectStateMachine, MultistreamSelectStateMachine.Action)
        switch role {
        case .dialer(let protocols):
            (machine, action) = MultistreamSelectStateMachine.dialer(proposing: protocols, configuration: configuration)
        case .listener(let supported):
            (machine, action) = MultistreamSelectStateMachine.listener(supporting: supported, configuration: configuration)
        }
        self.machine = machine
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timeoutTask = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = loopBound.value
            handler.fail(context: context, TransportError(.multistreamTimeout, "protocol negotiation took longer than \(handler.timeout)"))
        }
        perform(action, context: context)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .negotiating = phase, var machine else {
            // While configuring, bytes stay in the machine's leftover; afterwards we are removed.
            if case .configuring = phase { heldDuringConfiguration.append(unwrapInboundIn(data)) }
            return
        }
        do {
            let action = try machine.receive(unwrapInboundIn(data))
            self.machine = machine
            perform(action, context: context)
        } catch {
            self.machine = machine
            fail(context: context, error)
        }
    }

    private var heldDuringConfiguration: [ByteBuffer] = []

    private func perform(_ action: MultistreamSelectStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .wait:
            break
        case .send(let bytes):
            context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        case .selected(let chosen, let bytes):
            timeoutTask?.cancel()
            if bytes.readableBytes > 0 { context.writeAndFlush(wrapOutboundOut(bytes), promise: nil) }
            phase = .configuring
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            configurator(chosen, context.channel).hop(to: context.eventLoop).whenComplete { result in
                let (handler, context) = loopBound.value
                handler.configured(result, context: context)
            }
        }
    }

    private func configured(_ result: Result<Output, Error>, context: ChannelHandlerContext) {
        switch result {
        case .success(let output):
            phase = .finished
            var leftover = machine?.leftover ?? ByteBuffer()
            machine = nil
            for var held in heldDuringConfiguration { leftover.writeBuffer(&held) }
            heldDuringConfiguration = []
            resultPromise.succeed(output)
            if leftover.readableBytes > 0 {
                context.fireChannelRead(wrapInboundOut(leftover))
                context.fireChannelReadComplete()
            }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        case .failure(let error):
            fail(context: context, error)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        switch phase {
        case .idle, .negotiating, .configuring:
            fail(context: context, TransportError(.connectionClosed, "the connection closed during protocol negotiation"))
        case .finished:
            break
        }
        context.fireChannelInactive()
    }

    private func fail(context: ChannelHandlerContext, _ error: Error) {
        if case .finished = phase { return }
        phase = .finished
        timeoutTask?.cancel()
        machine = nil
        resultPromise.fail(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}

import Logging
import NIOCore
import NIOPosix
import PunchWire

/// Maps one port on the gateway and keeps it mapped: tries PCP, NAT-PMP and UPnP-IGD in turn,
/// renews the winner at half its lifetime, notices a gateway restart (the NAT-PMP or PCP epoch,
/// an ANNOUNCE, a UPnP lease that vanished, a renewal that failed until expiry) and maps again,
/// and removes the mapping on ``shutdown()``.
///
/// ```swift
/// let mapper = PortMapper(configuration: .init(transport: .udp, internalPort: 4001))
/// let mapping = try await mapper.start()          // GatewayMapping: protocol, external IP:port
/// Task { for await event in mapper.events { print(event) } }
/// ...
/// await mapper.shutdown()                          // deletes the mapping
/// ```
public actor PortMapper {
    public struct Configuration: Sendable {
        public var transport: PortMappingTransport
        /// The port on this host to map.
        public var internalPort: UInt16
        /// The external port asked for; by default the internal port. The gateway may grant another.
        public var suggestedExternalPort: UInt16?
        /// Seconds asked for; RFC 6886 §3.3 recommends 7200.
        public var lifetime: UInt32 = NATPMP.recommendedLifetime
        /// The protocols to try, in order.
        public var protocols: [PortMappingProtocol] = [.pcp, .natpmp, .upnp]
        /// The gateway; by default the routing table's IPv4 default gateway.
        public var gateway: IPAddress?
        /// The gateway's NAT-PMP/PCP port; 5351 except in tests.
        public var gatewayPort: UInt16 = NATPMP.serverPort
        /// Retransmission of NAT-PMP and PCP requests once a protocol is chosen.
        public var retransmission: RetransmissionPolicy = .rfc6886
        /// Retransmission while probing which protocol the gateway speaks, and for the removal on
        /// shutdown: short, so a silent protocol does not hold up the next one.
        public var probeRetransmission = RetransmissionPolicy(initialTimeout: .milliseconds(250), maximumAttempts: 4)
        public var upnp = UPnPClient.Configuration()
        public var lifecycle = MappingLifecycle.Configuration()
        /// Listen on UDP 5350 for the gateway's ANNOUNCE (RFC 6887 §14.1.1) and NAT-PMP address
        /// announcements (RFC 6886 §3.2.1), and renew at once when one arrives.
        public var listenForAnnouncements = true
        /// The port announcements arrive on: 5350 (RFC 6887 §14.1.1, RFC 6886 §3.2.1) except in tests.
        public var announcementPort: UInt16 = PCP.clientPort
        /// The most events kept for a slow reader of ``PortMapper/events``; older ones are dropped.
        public var maximumBufferedEvents = 64

        public init(transport: PortMappingTransport, internalPort: UInt16) {
            self.transport = transport
            self.internalPort = internalPort
        }
    }

    /// Everything the mapper reports, in order. Ends after ``shutdown()``.
    public nonisolated let events: AsyncStream<PortMappingEvent>
    public let configuration: Configuration

    private let eventSink: AsyncStream<PortMappingEvent>.Continuation
    private let group: any EventLoopGroup
    private let logger: Logger
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant

    private var lifecycle: MappingLifecycle
    private var epoch: GatewayEpoch?
    private var backend: (any MappingBackend)?
    private var announcements: DatagramSocket?
    private var announcementTask: Task<Void, Never>?
    private var loopTask: Task<Void, Never>?
    private var timerTask: Task<Void, Never>?
    private var triggers: AsyncStream<Trigger>.Continuation?
    private var isShutDown = false

    private enum Trigger: Sendable { case timer, announcement }

    /// Creates a mapper; nothing is sent until ``start()``.
    /// - Parameters:
    ///   - configuration: what to map and how.
    ///   - logger: where to log (debug and trace only).
    ///   - group: the event loops for the sockets.
    public init(configuration: Configuration, logger: Logger = Logger(label: "punch.portmapping"),
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.configuration = configuration
        self.logger = logger
        self.group = group
        self.origin = clock.now
        self.lifecycle = MappingLifecycle(configuration: configuration.lifecycle)
        (events, eventSink) = AsyncStream.makeStream(of: PortMappingEvent.self, bufferingPolicy: .bufferingNewest(max(1, configuration.maximumBufferedEvents)))
    }

    /// Finds a protocol the gateway speaks, creates the mapping, and starts keeping it alive.
    /// Reports ``PortMappingEvent/mapped(_:)`` too.
    /// - Returns: the mapping.
    /// - Throws: ``PortMappingError``: with one protocol configured, that protocol's error;
    ///   otherwise `.noProtocolAvailable` naming each protocol's failure; `.noGateway`;
    ///   `.shutDown` after ``shutdown()``.
    public func start() async throws -> GatewayMapping {
        guard !isShutDown else { throw PortMappingError(.shutDown, "the mapper was shut down") }
        if let mapping = lifecycle.mapping { return mapping }
        let gateway = try configuration.gateway ?? DefaultGateway.ipv4()
        var failures: [(PortMappingProtocol, PortMappingError)] = []
        let single = configuration.protocols.count == 1
        // UPnP's search has no side effect: it runs while PCP and NAT-PMP are probed, so a
        // UPnP-only gateway is found in the search's 2 s rather than after both probes time out.
        var upnpDiscovery: Task<UPnPClient, any Error>?
        if !single, configuration.protocols.contains(.upnp) {
            var upnp = configuration.upnp
            if upnp.gateway == nil, configuration.gateway != nil { upnp.gateway = gateway }
            let (group, logger) = (self.group, self.logger)
            upnpDiscovery = Task { try await UPnPClient.discover(configuration: upnp, group: group, logger: logger) }
        }
        defer { upnpDiscovery?.cancel() }
        for mappingProtocol in configuration.protocols {
            // Probing several protocols uses the short policy, so a silent one does not hold up
            // the next for two minutes (RFC 6886 §3.1's full schedule); the winner is rebuilt
            // with the full policy for renewals in `adopt`.
            let policy = single ? configuration.retransmission : configuration.probeRetransmission
            do {
                let backend = try await makeBackend(mappingProtocol, gateway: gateway, policy: policy, upnpDiscovery: upnpDiscovery)
                do {
                    let (mapping, epochValue) = try await backend.map(suggestedExternalPort: suggestedPort, lifetime: configuration.lifetime)
                    try await adopt(backend, mapping: mapping, epoch: epochValue, gateway: gateway)
                    return mapping
                } catch {
                    await backend.close()
                    throw error
                }
            } catch let error as PortMappingError {
                logger.debug("port mapping: \(mappingProtocol) failed", metadata: ["error": "\(error)"])
                failures.append((mappingProtocol, error))
            } catch {
                failures.append((mappingProtocol, PortMappingError(.socketFailure, "\(error)")))
            }
        }
        if single, let (_, error) = failures.first { throw error }
        throw PortMappingError(
            .noProtocolAvailable,
            "no protocol could map \(configuration.transport) port \(configuration.internalPort) at \(gateway): "
                + failures.map { "\($0.0): \($0.1.message)" }.joined(separator: "; "))
    }

    /// Stops renewing, removes the mapping (reporting ``PortMappingEvent/removed(_:)``), closes
    /// the sockets and ends ``events``. Safe to call more than once.
    public func shutdown() async {
        guard !isShutDown else { return }
        isShutDown = true
        timerTask?.cancel()
        triggers?.finish()
        announcementTask?.cancel()
        await announcements?.close()
        if let loopTask {
            loopTask.cancel()
            await loopTask.value
        }
        if let mapping = lifecycle.stop(), let backend {
            do {
                try await backend.unmap(mapping)
                emit(.removed(mapping))
            } catch let error as PortMappingError {
                emit(.removalFailed(mapping, error))
            } catch {
                emit(.removalFailed(mapping, PortMappingError(.socketFailure, "\(error)")))
            }
        }
        await backend?.close()
        backend = nil
        eventSink.finish()
    }

    // MARK: - Protocol choice

    private var suggestedPort: UInt16 { configuration.suggestedExternalPort ?? configuration.internalPort }

    private func makeBackend(
        _ mappingProtocol: PortMappingProtocol, gateway: IPAddress, policy: RetransmissionPolicy, upnpDiscovery: Task<UPnPClient, any Error>? = nil
    ) async throws -> any MappingBackend {
        switch mappingProtocol {
        case .pcp:
            let client = try await PCPClient(gateway: gateway, port: configuration.gatewayPort, policy: policy, group: group)
            return PCPBackend(client: client, transport: configuration.transport, internalPort: configuration.internalPort, nonce: .random())
        case .natpmp:
            let client = try await NATPMPClient(gateway: gateway, port: configuration.gatewayPort, policy: policy, group: group)
            return NATPMPBackend(client: client, transport: configuration.transport, internalPort: configuration.internalPort)
        case .upnp:
            let client: UPnPClient
            if let upnpDiscovery {
                client = try await upnpDiscovery.value
            } else {
                var upnp = configuration.upnp
                if upnp.gateway == nil, configuration.gateway != nil { upnp.gateway = gateway }
                client = try await UPnPClient.discover(configuration: upnp, group: group, logger: logger)
            }
            return UPnPBackend(client: client, transport: configuration.transport, internalPort: configuration.internalPort)
        }
    }

    /// Keeps the winning backend and starts the renewal loop.
    private func adopt(_ chosen: any MappingBackend, mapping: GatewayMapping, epoch epochValue: UInt32?, gateway: IPAddress) async throws {
        if configuration.protocols.count > 1, chosen.mappingProtocol != .upnp {
            // Probing used the short policy; renewals get the full one. A fresh client keeps the nonce.
            backend = try await rebuild(chosen, gateway: gateway)
        } else {
            backend = chosen
        }
        if let rule = chosen.epochRule {
            var tracker = GatewayEpoch(rule: rule)
            if let epochValue { _ = tracker.observe(serverEpoch: epochValue, at: now) }
            epoch = tracker
        }
        let (stream, continuation) = AsyncStream.makeStream(of: Trigger.self, bufferingPolicy: .bufferingNewest(4))
        triggers = continuation
        perform(lifecycle.mapped(mapping, at: now))
        loopTask = Task { [weak self] in
            for await trigger in stream {
                guard let self else { return }
                await self.handle(trigger)
            }
        }
        if configuration.listenForAnnouncements, chosen.mappingProtocol != .upnp {
            await listenForAnnouncements(from: gateway)
        }
    }

    private func rebuild(_ backend: any MappingBackend, gateway: IPAddress) async throws -> any MappingBackend {
        switch backend {
        case let pcp as PCPBackend:
            let client = try await PCPClient(gateway: gateway, port: configuration.gatewayPort, policy: configuration.retransmission, group: group)
            await pcp.close()
            return PCPBackend(client: client, transport: pcp.transport, internalPort: pcp.internalPort, nonce: pcp.nonce)
        case let natpmp as NATPMPBackend:
            let client = try await NATPMPClient(gateway: gateway, port: configuration.gatewayPort, policy: configuration.retransmission, group: group)
            await natpmp.close()
            return NATPMPBackend(client: client, transport: natpmp.transport, internalPort: natpmp.internalPort)
        default:
            return backend
        }
    }

    // MARK: - The renewal loop

    private var now: Duration { clock.now - origin }

    private func handle(_ trigger: Trigger) async {
        guard !isShutDown, let backend else { return }
        switch lifecycle.step {
        case .none:
            return
        case .create:
            await attempt(backend, renewing: nil)
        case .renew(let mapping):
            if trigger == .announcement { logger.debug("port mapping: gateway announcement; renewing now") }
            do {
                if try await !backend.stillMapped(mapping) {
                    perform(lifecycle.gatewayLostState("the gateway no longer holds \(mapping)", at: now))
                    return
                }
            } catch {
                perform(lifecycle.failed("\(error)", at: now))
                return
            }
            await attempt(backend, renewing: mapping)
        }
    }

    private func attempt(_ backend: any MappingBackend, renewing old: GatewayMapping?) async {
        let port = old?.external.port ?? suggestedPort
        do {
            let (mapping, epochValue) = try await backend.map(suggestedExternalPort: port, lifetime: configuration.lifetime)
            guard !isShutDown else { return }
            if let epochValue, var tracker = epoch {
                let restarted = tracker.observe(serverEpoch: epochValue, at: now)
                epoch = tracker
                if restarted, old != nil {
                    // The reply that showed the restart also re-created the mapping.
                    perform(lifecycle.gatewayLostState("the gateway restarted (its epoch went back to \(epochValue))", at: now))
                }
            }
            perform(lifecycle.mapped(mapping, at: now))
        } catch {
            guard !isShutDown else { return }
            logger.debug("port mapping: attempt failed", metadata: ["error": "\(error)"])
            perform(lifecycle.failed("\(error)", at: now))
        }
    }

    private func perform(_ action: MappingLifecycle.Action) {
        for report in action.reports {
            switch report {
            case .mapped(let mapping): emit(.mapped(mapping))
            case .renewed(let mapping): emit(.renewed(mapping))
            case .externalAddressChanged(let old, let new): emit(.externalAddressChanged(old: old, new: new))
            case .lost(let reason): emit(.lost(PortMappingError(.mappingLost, reason)))
            }
        }
        timerTask?.cancel()
        timerTask = nil
        guard let wakeUp = action.nextWakeUp, let triggers else { return }
        let delay = wakeUp - now
        timerTask = Task {
            if delay > .zero { try? await Task.sleep(for: delay) }
            guard !Task.isCancelled else { return }
            triggers.yield(.timer)
        }
    }

    private func emit(_ event: PortMappingEvent) {
        logger.debug("port mapping event", metadata: ["event": "\(event)"])
        eventSink.yield(event)
    }

    // MARK: - Announcements

    /// The local address of the announcement listener, if it runs.
    public var announcementAddress: SocketAddress? { announcements?.localAddress }

    /// Binds UDP 5350 (shared: SO_REUSEADDR) and wakes the loop when the gateway announces a
    /// restart or a new address. The reply to the renewal that follows decides, through the
    /// epoch, whether the mapping was lost: a forged announcement costs one renewal, nothing more.
    private func listenForAnnouncements(from gateway: IPAddress) async {
        guard let socket = try? await DatagramSocket.bind(port: Int(configuration.announcementPort), reuseAddress: true, group: group) else {
            logger.debug("port mapping: cannot listen for announcements on UDP \(configuration.announcementPort)")
            return
        }
        announcements = socket
        let triggers = self.triggers
        let logger = self.logger
        announcementTask = Task {
            while !Task.isCancelled {
                guard let datagram = await socket.receive(until: .now() + .seconds(3600)) else {
                    if Task.isCancelled || !socket.channel.isActive { return }
                    continue
                }
                guard let source = datagram.source.ipAddress, (try? IPAddress(source)) == gateway else { continue }
                let isPCPAnnounce = (try? PCPResponse.decode(datagram.bytes))?.opcode == .announce
                let isNATPMPAnnouncement = (try? NATPMPResponse.decode(datagram.bytes))?.requestOpcode == 0
                if isPCPAnnounce || isNATPMPAnnouncement {
                    logger.debug("port mapping: announcement from the gateway")
                    triggers?.yield(.announcement)
                }
            }
        }
    }
}

import ArgumentParser
import NIOCore
import Prometheus
import Punch

/// What `punch listen` and `punch dial` share around their ``PunchNode``.
enum NodeCommandSupport {
    /// The CLI's default for `--confirmations`: 1. The library's
    /// ``ObservedAddressBook/Configuration/confirmations`` is 3, but a node that knows only its
    /// relay (as `punch dial`, or the NAT lab) has one observer.
    static let defaultConfirmations = 1

    /// `IP:PORT` for an option, or a validation error naming it.
    static func endpoint(_ text: String, option: String) throws -> IPEndpoint {
        guard let endpoint = try? IPEndpoint(text) else {
            throw ValidationError("\(option) wants IP:PORT (such as 127.0.0.1:9464 or [::1]:9464), not \(text)")
        }
        return endpoint
    }

    /// Serves the node's metrics (`punch_node_*`, swift-metrics into a Prometheus registry) at
    /// `http://ENDPOINT/metrics`, and points `configuration` at that registry.
    static func serveMetrics(at text: String, into configuration: inout NodeConfiguration) async throws -> (channel: Channel, address: IPEndpoint) {
        let registry = PrometheusCollectorRegistry()
        configuration.metricsFactory = PrometheusMetricsFactory(registry: registry)
        let channel = try await MetricsEndpoint.start(at: try endpoint(text, option: "--metrics")) {
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return buffer
        }
        let requested = try endpoint(text, option: "--metrics")
        return (channel, channel.localAddress.flatMap(IPEndpoint.init) ?? requested)
    }
}

extension NodeEvent {
    /// A host's event as the node reports it (for commands that run a bare ``PunchHost``).
    init(_ event: HostEvent) {
        switch event {
        case .listening(let addresses): self = .listening(addresses)
        case .connected(let connection): self = .connected(connection)
        case .identified(let connection, let info): self = .identified(connection, info)
        case .disconnected(let connection, let error): self = .disconnected(connection, error: error)
        case .connectionFailed(let direction, let remote, let error): self = .connectionFailed(direction: direction, remote: remote, error: error)
        }
    }
}

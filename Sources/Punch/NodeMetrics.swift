import Metrics
import NIOCore
import PunchTransport

/// The node's metrics (swift-metrics), created once per node. Names follow `punch_node_<what>`:
///
/// | metric | kind | dimensions |
/// | --- | --- | --- |
/// | `punch_node_connections` | gauge | `path` (direct, relayed) |
/// | `punch_node_dials_total` | counter | `path`, `outcome` (success, failure) |
/// | `punch_node_upgrade_attempts_total` | counter | `role` (initiator, responder) |
/// | `punch_node_upgrade_successes_total` | counter | |
/// | `punch_node_relayed_to_direct_seconds` | timer (histogram) | |
/// | `punch_node_bytes_total` | counter | `path`, `direction` (in, out) |
/// | `punch_node_events_dropped_total` | counter | |
struct NodeMetrics: Sendable {
    private let factory: any MetricsFactory
    private let connectionGauges: [ConnectionPath: Gauge]
    private let relayedToDirect: Metrics.Timer
    let upgradeSuccesses: Counter
    let eventsDropped: Counter

    init(factory: any MetricsFactory) {
        self.factory = factory
        connectionGauges = [
            .direct: Gauge(label: "punch_node_connections", dimensions: [("path", "direct")], factory: factory),
            .relayed: Gauge(label: "punch_node_connections", dimensions: [("path", "relayed")], factory: factory),
        ]
        relayedToDirect = Metrics.Timer(label: "punch_node_relayed_to_direct_seconds", dimensions: [], factory: factory)
        upgradeSuccesses = Counter(label: "punch_node_upgrade_successes_total", dimensions: [], factory: factory)
        eventsDropped = Counter(label: "punch_node_events_dropped_total", dimensions: [], factory: factory)
    }

    func connections(_ path: ConnectionPath, _ count: Int) {
        connectionGauges[path]?.record(count)
    }

    func dial(_ path: ConnectionPath, success: Bool) {
        Counter(label: "punch_node_dials_total", dimensions: [("path", path.rawValue), ("outcome", success ? "success" : "failure")], factory: factory)
            .increment()
    }

    func upgradeAttempt(initiator: Bool) {
        Counter(label: "punch_node_upgrade_attempts_total", dimensions: [("role", initiator ? "initiator" : "responder")], factory: factory)
            .increment()
    }

    func upgraded(after duration: Duration?) {
        upgradeSuccesses.increment()
        if let duration { relayedToDirect.recordNanoseconds(TimeAmount(duration).nanoseconds) }
    }

    func bytes(_ path: ConnectionPath, received: Int, sent: Int) {
        if received > 0 {
            Counter(label: "punch_node_bytes_total", dimensions: [("path", path.rawValue), ("direction", "in")], factory: factory).increment(by: received)
        }
        if sent > 0 {
            Counter(label: "punch_node_bytes_total", dimensions: [("path", path.rawValue), ("direction", "out")], factory: factory).increment(by: sent)
        }
    }
}

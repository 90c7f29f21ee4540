import Prometheus
import Punch

/// The Prometheus view of a `punch relay`: at each scrape the relay's, the STUN servers' and the
/// host's counters are read and written into a swift-prometheus registry, which renders the text
/// format. Counters are set to the totals the servers keep (they never go down while the
/// process lives), gauges to the current values.
///
/// Metric names (all prefixed `punch_`):
/// - `relay_reservations_active`, `relay_circuits_active` (gauges)
/// - `relay_reservations_granted_total`, `relay_circuits_opened_total`, `relay_bytes_relayed_total`
/// - `relay_refusals_total{status}`: refusals by the Circuit Relay v2 status sent;
///   `relay_cut_off_total`: connections closed for flooding hop streams
/// - `stun_responses_total{result="success"|"error"}`, `stun_dropped_total{reason}`
/// - `host_connections{path="direct"|"relayed"}` (gauge)
final class RelayMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()

    /// Renders the current values.
    func render(relay: RelayServer.Metrics, stun: [STUNServerStateMachine.Statistics], connections: [Connection]) -> [UInt8] {
        gauge("punch_relay_reservations_active", "Reservations held now.", relay.activeReservations)
        gauge("punch_relay_circuits_active", "Circuits open now.", relay.activeCircuits)
        counter("punch_relay_reservations_granted_total", "Reservations granted (renewals excluded).", relay.reservationsGranted)
        counter("punch_relay_circuits_opened_total", "Circuits joined.", relay.circuitsOpened)
        counter("punch_relay_bytes_relayed_total", "Bytes forwarded through closed circuits, both directions.", Int(clamping: relay.bytesRelayed))
        counter("punch_relay_cut_off_total", "Connections closed for flooding hop streams.", relay.cutOff)
        for (status, count) in relay.refusals {
            counter("punch_relay_refusals_total", "Requests refused, by the status sent.", count, labels: [("status", status)])
        }
        let total = stun.reduce(into: STUNServerStateMachine.Statistics()) { sum, next in
            sum.successResponses += next.successResponses
            sum.errorResponses += next.errorResponses
            sum.droppedMalformed += next.droppedMalformed
            sum.droppedNotRequest += next.droppedNotRequest
            sum.droppedUnsupportedMethod += next.droppedUnsupportedMethod
            sum.droppedSourceRateLimit += next.droppedSourceRateLimit
            sum.droppedTotalRateLimit += next.droppedTotalRateLimit
            sum.droppedSourceTableFull += next.droppedSourceTableFull
            sum.droppedBadSource += next.droppedBadSource
        }
        let responses = "STUN responses sent."
        counter("punch_stun_responses_total", responses, total.successResponses, labels: [("result", "success")])
        counter("punch_stun_responses_total", responses, total.errorResponses, labels: [("result", "error")])
        let dropped = "STUN datagrams dropped unanswered, by reason."
        for (reason, count) in [
            ("malformed", total.droppedMalformed), ("not_request", total.droppedNotRequest),
            ("unsupported_method", total.droppedUnsupportedMethod), ("source_rate_limit", total.droppedSourceRateLimit),
            ("total_rate_limit", total.droppedTotalRateLimit), ("source_table_full", total.droppedSourceTableFull),
            ("bad_source", total.droppedBadSource),
        ] {
            counter("punch_stun_dropped_total", dropped, count, labels: [("reason", reason)])
        }
        let paths = Dictionary(grouping: connections, by: \.path)
        for path in [ConnectionPath.direct, .relayed] {
            gauge("punch_host_connections", "Connections open now, by path.", paths[path]?.count ?? 0, labels: [("path", path.rawValue)])
        }
        var text: [UInt8] = []
        registry.emit(into: &text)
        return text
    }

    /// The full name as the metric name, no unit suffix added (the names above carry theirs).
    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    private func gauge(_ name: String, _ help: String, _ value: Int, labels: [(String, String)] = []) {
        registry.makeGauge(descriptor: Self.descriptor(name, help), labels: labels).set(Int64(value))
    }

    private func counter(_ name: String, _ help: String, _ value: Int, labels: [(String, String)] = []) {
        let counter = registry.makeCounter(descriptor: Self.descriptor(name, help), labels: labels)
        counter.reset()
        counter.increment(by: Int64(value))
    }
}

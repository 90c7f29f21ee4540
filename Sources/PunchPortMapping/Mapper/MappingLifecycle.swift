/// When to renew a mapping, when to give up on it, and what to tell the user: the renewal
/// logic of ``PortMapper`` as a pure state machine. Times are local monotonic `Duration`s from
/// any fixed origin; the mapper passes the clock, tests pass numbers.
///
/// The shape follows swift-nio-http2's connection-management state machine: each input is a
/// `mutating func` returning what to do.
///
/// ```swift
/// var lifecycle = MappingLifecycle(configuration: .init())
/// let action = lifecycle.mapped(mapping, at: .seconds(0))   // .report(.mapped(...)), renew at 60 s
/// ```
public struct MappingLifecycle: Sendable {
    public struct Configuration: Hashable, Sendable {
        /// Renew when this fraction of the granted lifetime has passed; RFC 6886 §3.3 and
        /// RFC 6887 §11.2.1 both suggest half.
        public var renewalFraction: Double = 0.5
        /// The soonest a renewal is scheduled after a grant, whatever the lifetime (a gateway
        /// granting 1 s must not make the mapper spin).
        public var minimumRenewalInterval: Duration = .seconds(1)
        /// The wait between renewal attempts after one failed, while the mapping still lives.
        public var retryInterval: Duration = .seconds(1)
        /// The wait between attempts to create the mapping again after it was lost; doubled after
        /// each failure up to ``maximumRemapInterval``.
        public var remapInterval: Duration = .seconds(1)
        public var maximumRemapInterval: Duration = .seconds(60)
        /// How often a permanent (lifetime 0) UPnP lease is checked for existence.
        public var permanentLeaseCheckInterval: Duration = .seconds(60)

        public init() {}
    }

    /// What the mapper reports.
    public enum Report: Hashable, Sendable {
        case mapped(GatewayMapping)
        case renewed(GatewayMapping)
        case externalAddressChanged(old: GatewayMapping, new: GatewayMapping)
        case lost(reason: String)
    }

    /// What the mapper does next.
    public struct Action: Hashable, Sendable {
        /// Events to report, in order.
        public var reports: [Report]
        /// When to call the mapper's timer input next: renew, retry, or create the mapping again.
        public var nextWakeUp: Duration?
    }

    /// What the next timer should do.
    public enum Step: Hashable, Sendable {
        /// Create the mapping (first time, or after it was lost).
        case create
        /// Renew the existing mapping.
        case renew(GatewayMapping)
        /// Nothing: stopped.
        case none
    }

    enum State: Sendable {
        case unmapped(failures: Int)
        case active(mapping: GatewayMapping, expiresAt: Duration?)
        case stopped
    }

    public let configuration: Configuration
    private var state: State = .unmapped(failures: 0)

    public init(configuration: Configuration) { self.configuration = configuration }

    /// The mapping now held, if any.
    public var mapping: GatewayMapping? {
        if case .active(let mapping, _) = state { return mapping }
        return nil
    }

    /// What the timer should do now.
    public var step: Step {
        switch state {
        case .unmapped: .create
        case .active(let mapping, _): .renew(mapping)
        case .stopped: .none
        }
    }

    /// The gateway granted (or renewed) a mapping at `now`.
    public mutating func mapped(_ mapping: GatewayMapping, at now: Duration) -> Action {
        var reports: [Report] = []
        switch state {
        case .active(let old, _):
            if old.external != mapping.external {
                reports.append(.externalAddressChanged(old: old, new: mapping))
            } else {
                reports.append(.renewed(mapping))
            }
        case .unmapped:
            reports.append(.mapped(mapping))
        case .stopped:
            return Action(reports: [], nextWakeUp: nil)
        }
        let expiresAt: Duration? = mapping.lifetime == 0 ? nil : now + .seconds(Int64(mapping.lifetime))
        state = .active(mapping: mapping, expiresAt: expiresAt)
        return Action(reports: reports, nextWakeUp: now + renewalDelay(for: mapping))
    }

    /// A renewal or creation attempt failed at `now`.
    public mutating func failed(_ reason: String, at now: Duration) -> Action {
        switch state {
        case .active(_, let expiresAt):
            if let expiresAt, now + configuration.retryInterval < expiresAt {
                return Action(reports: [], nextWakeUp: now + configuration.retryInterval)
            }
            if expiresAt == nil {
                // A permanent lease that could not be checked: keep trying at the retry pace.
                return Action(reports: [], nextWakeUp: now + configuration.retryInterval)
            }
            state = .unmapped(failures: 0)
            return Action(reports: [.lost(reason: "renewal failed until the mapping expired: \(reason)")], nextWakeUp: now + configuration.remapInterval)
        case .unmapped(let failures):
            state = .unmapped(failures: failures + 1)
            return Action(reports: [], nextWakeUp: now + remapDelay(failures: failures + 1))
        case .stopped:
            return Action(reports: [], nextWakeUp: nil)
        }
    }

    /// The gateway lost the mapping (a restart seen in the epoch, an ANNOUNCE, a lease that is
    /// gone): report it and create it again at once (RFC 6886 §3.7, RFC 6887 §14.1).
    public mutating func gatewayLostState(_ reason: String, at now: Duration) -> Action {
        guard case .active = state else {
            return Action(reports: [], nextWakeUp: state.isStopped ? nil : now)
        }
        state = .unmapped(failures: 0)
        return Action(reports: [.lost(reason: reason)], nextWakeUp: now)
    }

    /// The mapper stops: no more timers.
    public mutating func stop() -> GatewayMapping? {
        let mapping = self.mapping
        state = .stopped
        return mapping
    }

    func renewalDelay(for mapping: GatewayMapping) -> Duration {
        guard mapping.lifetime > 0 else { return configuration.permanentLeaseCheckInterval }
        let delay = Duration.milliseconds(Int64(Double(mapping.lifetime) * configuration.renewalFraction * 1000))
        return max(delay, configuration.minimumRenewalInterval)
    }

    func remapDelay(failures: Int) -> Duration {
        var delay = configuration.remapInterval
        for _ in 0..<min(failures - 1, 20) where delay < configuration.maximumRemapInterval { delay = delay * 2 }
        return min(delay, configuration.maximumRemapInterval)
    }
}

extension MappingLifecycle.State {
    var isStopped: Bool {
        if case .stopped = self { return true }
        return false
    }
}

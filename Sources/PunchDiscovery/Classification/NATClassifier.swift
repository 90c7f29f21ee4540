import NIOCore
import PunchWire

extension STUNClientConfiguration {
    /// Retransmission for NAT behaviour probes, several of which are expected to go unanswered:
    /// RTO 250 ms, Rc 4, Rm 8, so a probe fails after 3.75 s instead of RFC 8489's 39.5 s, yet
    /// survives three lost requests (or responses) in a row.
    public static var behaviourDiscovery: STUNClientConfiguration {
        STUNClientConfiguration(retransmissionTimeout: .milliseconds(250), maximumRequests: 4, finalWaitMultiplier: 8)
    }
}

/// Runs RFC 5780 NAT behaviour discovery (``NATClassificationStateMachine``) over a
/// ``STUNClient``, one run at a time, and keeps the believed result
/// (``NATClassificationHistory``).
///
/// A ``classify(server:)`` call while a run is going joins that run and gets its result, even if
/// it named another server. Give the client ``STUNClientConfiguration/behaviourDiscovery``
/// timing, or a failing filtering probe takes 39.5 s.
///
/// ```swift
/// let client = try await STUNClient.bind(configuration: .behaviourDiscovery)
/// let classifier = NATClassifier(client: client)
/// let result = await classifier.classify(server: try IPEndpoint("203.0.113.10:3478"))
/// print(result.mapping ?? "unknown", result.filtering ?? "unknown")
/// ```
public actor NATClassifier {
    private let client: STUNClient
    private var running: Task<NATClassification, Never>?
    private var history = NATClassificationHistory()

    /// Creates a classifier that probes from `client`'s socket.
    public init(client: STUNClient) {
        self.client = client
    }

    /// The classification believed now, or `nil` before the first run finished.
    public var current: NATClassification? { history.current }

    /// Runs behaviour discovery against `server` (an RFC 5780 server's primary address), or joins
    /// the run in progress, and returns what is believed afterwards.
    public func classify(server: IPEndpoint) async -> NATClassification {
        if let running { return await running.value }
        let client = self.client
        let task = Task {
            let run = await Self.run(client: client, server: server)
            return self.finished(run)
        }
        running = task
        return await task.value
    }

    private func finished(_ run: NATClassification) -> NATClassification {
        running = nil
        return history.record(run)
    }

    /// One run: performs the state machine's probes, several at once where it asks for that.
    static func run(client: STUNClient, server: IPEndpoint) async -> NATClassification {
        var machine = NATClassificationStateMachine(server: server, localEndpoint: client.localAddress)
        typealias Outcome = (NATClassificationStateMachine.Probe, STUNBindingResponse?, Bool)
        return await withTaskGroup(of: Outcome.self) { group in
            var actions = machine.start()
            while true {
                for action in actions {
                    switch action {
                    case .finish(let result):
                        group.cancelAll()
                        return result
                    case .send(let request):
                        group.addTask {
                            if request.isEcho {
                                let echoed = (try? await client.echoProbe(to: request.destination)) ?? false
                                return (request.probe, nil, echoed)
                            }
                            do {
                                let response = try await client.binding(
                                    to: request.destination, attributes: request.attributes, expectingResponseFrom: request.expectedSource)
                                return (request.probe, response, true)
                            } catch {
                                return (request.probe, nil, false)
                            }
                        }
                    }
                }
                guard let (probe, response, ok) = await group.next() else {
                    // Cannot happen: the machine finishes once nothing is pending.
                    return NATClassification(server: server)
                }
                actions = ok
                    ? machine.succeeded(probe, mappedAddress: response?.mappedAddress, otherAddress: response?.otherAddress)
                    : machine.failed(probe)
            }
        }
    }
}

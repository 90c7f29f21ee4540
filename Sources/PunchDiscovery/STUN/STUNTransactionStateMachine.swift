import NIOCore
import PunchWire

/// The client side of STUN transactions over UDP, as a value: which requests are outstanding,
/// when each is retransmitted (RFC 8489 §6.2.1), and which received message completes which
/// transaction. No I/O: ``STUNClient`` feeds it events and performs the actions it returns.
///
/// A received message completes a transaction only if its transaction ID is outstanding **and**
/// it came from the address the transaction expects (the server it was sent to, or the address
/// a CHANGE-REQUEST asks the server to answer from). Anything else is dropped and counted, so
/// an off-path sender must guess both 96 random bits and the server's address.
public struct STUNTransactionStateMachine: Sendable {
    /// What completes a transaction.
    public enum Expectation: Hashable, Sendable {
        /// A success or error response.
        case response
        /// The request itself, looped back to this socket (the RFC 5780 §4.5 hairpin test).
        case echo
    }

    /// One outstanding transaction.
    struct Transaction: Sendable {
        var request: [UInt8]
        var destination: IPEndpoint
        /// `nil`: any source (the hairpin echo, whose source the NAT chooses).
        var expectedSource: IPEndpoint?
        var expectation: Expectation
        var requestsSent: Int
        var interval: TimeAmount
        var deadline: NIODeadline
        var firstSent: NIODeadline
    }

    /// Counters of what happened, for logs and metrics.
    public struct Statistics: Hashable, Sendable {
        /// Transactions started.
        public var started = 0
        /// Transactions completed by a matching message.
        public var completed = 0
        /// Requests sent again after a timeout.
        public var retransmissions = 0
        /// Transactions that ran out of retransmissions.
        public var timeouts = 0
        /// STUN messages whose transaction ID is not outstanding (late, duplicate or forged).
        public var droppedUnknownTransaction = 0
        /// Messages with an outstanding ID from an address the transaction does not expect.
        public var droppedWrongSource = 0
        /// Messages of a class the transaction does not expect (a request for a response).
        public var droppedUnexpectedClass = 0
        /// Datagrams that looked like STUN but did not decode (bad FINGERPRINT, truncated, ...).
        public var droppedMalformed = 0
        /// Start requests refused because the table was full.
        public var refused = 0
        /// STUN requests and indications no transaction waited for, passed down the pipeline.
        public var passedOn = 0
        /// Datagrams that were not STUN, passed down the pipeline.
        public var nonSTUN = 0
        public init() {}
    }

    /// What to do after ``start(id:request:destination:expectedSource:expectation:now:)``.
    public enum StartAction: Sendable {
        /// Send the request now.
        case send([UInt8], to: IPEndpoint)
        /// The transaction was not started.
        case refuse(DiscoveryError)
    }

    /// What a received message means.
    public enum ReceiveAction: Sendable {
        /// The transaction with this ID is done; its message arrived from `source`.
        case complete(STUNTransactionID, STUNMessage, source: IPEndpoint, roundTrip: TimeAmount)
        /// A request or indication that no transaction waits for: not ours to answer, so it goes
        /// on to whatever else shares the socket (a peer's connectivity check, say).
        case passOn
        /// Nothing to do; the counters say why.
        case drop
    }

    /// What a timer tick requires.
    public enum TimerAction: Sendable {
        /// Send this request again.
        case retransmit([UInt8], to: IPEndpoint)
        /// The transaction failed: no matching message in time.
        case timeOut(STUNTransactionID)
    }

    private let configuration: STUNClientConfiguration
    private var transactions: [STUNTransactionID: Transaction] = [:]
    /// What has happened so far.
    public private(set) var statistics = Statistics()

    /// Creates an empty table.
    public init(configuration: STUNClientConfiguration) {
        self.configuration = configuration
    }

    /// How many transactions are outstanding.
    public var outstandingCount: Int { transactions.count }

    /// The earliest time ``timerFired(now:)`` has something to do, or `nil` when idle.
    public var nextDeadline: NIODeadline? {
        transactions.values.lazy.map(\.deadline).min()
    }

    /// Starts a transaction: returns the first send, or a refusal when the table is full or the
    /// ID is already in use.
    public mutating func start(
        id: STUNTransactionID, request: [UInt8], destination: IPEndpoint, expectedSource: IPEndpoint?,
        expectation: Expectation = .response, now: NIODeadline
    ) -> StartAction {
        guard transactions.count < configuration.maximumOutstandingTransactions else {
            statistics.refused += 1
            return .refuse(DiscoveryError(
                .stunTooManyTransactions,
                "\(transactions.count) STUN transactions are running, the configured maximum (maximumOutstandingTransactions); wait for one to finish"))
        }
        guard transactions[id] == nil else {
            statistics.refused += 1
            return .refuse(DiscoveryError(.invalidConfiguration, "STUN transaction \(id) is already running"))
        }
        let interval = configuration.retransmissionTimeout
        // RFC 8489 §6.2.1: with one request in all, the wait is Rm * RTO after it.
        let firstWait = configuration.maximumRequests > 1 ? interval : interval * Int64(configuration.finalWaitMultiplier)
        transactions[id] = Transaction(
            request: request, destination: destination, expectedSource: expectedSource, expectation: expectation,
            requestsSent: 1, interval: interval, deadline: now + firstWait, firstSent: now)
        statistics.started += 1
        return .send(request, to: destination)
    }

    /// Matches a received message against the outstanding transactions.
    public mutating func receive(_ message: STUNMessage, from source: IPEndpoint, now: NIODeadline) -> ReceiveAction {
        guard let transaction = transactions[message.transactionID] else {
            switch message.type.messageClass {
            case .request, .indication:
                statistics.passedOn += 1
                return .passOn
            case .successResponse, .errorResponse:
                statistics.droppedUnknownTransaction += 1
                return .drop
            }
        }
        let isResponse = message.type.messageClass == .successResponse || message.type.messageClass == .errorResponse
        switch transaction.expectation {
        case .response where !isResponse, .echo where message.type.messageClass != .request:
            statistics.droppedUnexpectedClass += 1
            return .drop
        default:
            break
        }
        if let expected = transaction.expectedSource, expected != source {
            statistics.droppedWrongSource += 1
            return .drop
        }
        transactions[message.transactionID] = nil
        statistics.completed += 1
        return .complete(message.transactionID, message, source: source, roundTrip: now - transaction.firstSent)
    }

    /// Counts a datagram that looked like STUN but did not decode.
    public mutating func receivedMalformed() {
        statistics.droppedMalformed += 1
    }

    /// Counts a datagram that is not STUN (passed on untouched).
    public mutating func receivedNonSTUN() {
        statistics.nonSTUN += 1
    }

    /// Retransmits or fails every transaction whose deadline has passed (RFC 8489 §6.2.1): the
    /// interval doubles after each retransmission; after Rc requests the client waits Rm * RTO.
    public mutating func timerFired(now: NIODeadline) -> [TimerAction] {
        var actions: [TimerAction] = []
        for (id, var transaction) in transactions where transaction.deadline <= now {
            if transaction.requestsSent >= configuration.maximumRequests {
                transactions[id] = nil
                statistics.timeouts += 1
                actions.append(.timeOut(id))
                continue
            }
            transaction.requestsSent += 1
            transaction.interval = transaction.interval * 2
            let wait = transaction.requestsSent == configuration.maximumRequests
                ? configuration.retransmissionTimeout * Int64(configuration.finalWaitMultiplier)
                : transaction.interval
            // From the scheduled time, not from `now`, so a late timer does not stretch the schedule.
            transaction.deadline = transaction.deadline + wait
            transactions[id] = transaction
            statistics.retransmissions += 1
            actions.append(.retransmit(transaction.request, to: transaction.destination))
        }
        return actions
    }

    /// Forgets a transaction (its caller gave up); returns whether it was outstanding.
    @discardableResult
    public mutating func cancel(_ id: STUNTransactionID) -> Bool {
        transactions.removeValue(forKey: id) != nil
    }

    /// Forgets every transaction and returns their IDs (the socket closed).
    public mutating func cancelAll() -> [STUNTransactionID] {
        let ids = Array(transactions.keys)
        transactions.removeAll()
        return ids
    }
}

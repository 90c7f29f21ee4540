import NIOConcurrencyHelpers
import NIOCore
import PunchCrypto
import PunchTransport
import PunchWire

/// An ``ObservedAddressBook`` shared by many connections: feed it identify's answers, read the
/// confirmed addresses. Thread-safe.
///
/// ```swift
/// var configuration = ObservedAddressBook.Configuration()
/// configuration.confirmations = 1          // one public observer, as in the NAT lab
/// let tracker = try ObservedAddressTracker(configuration: configuration)
/// let info = try await connection.identify()
/// tracker.record(info, on: connection)
/// print(tracker.confirmed)
/// ```
public final class ObservedAddressTracker: Sendable {
    private let book: NIOLockedValueBox<ObservedAddressBook>

    /// An empty tracker.
    ///
    /// - Throws: ``DiscoveryError`` `.invalidConfiguration` when a limit is out of range.
    public init(configuration: ObservedAddressBook.Configuration = .init()) throws {
        try configuration.validate()
        self.book = NIOLockedValueBox(ObservedAddressBook(configuration: configuration))
    }

    /// Records identify's observed address of `connection` (if it has one), observed by the
    /// connection's peer, for the connection's local address. Relayed connections are ignored:
    /// their observed address is the relay's view of the relay's own connection.
    @discardableResult
    public func record(_ info: IdentifyInfo, on connection: Connection) -> ObservedAddressBook.RecordOutcome {
        guard connection.path == .direct, let observed = info.observedAddress else { return .ignored }
        let peer = connection.remotePeerID
        let local = connection.localAddress
        return book.withLockedValue { $0.record(observed, by: peer, local: local, now: .now()) }
    }

    /// Records an observation directly; see ``ObservedAddressBook/record(_:by:local:now:)``.
    @discardableResult
    public func record(_ observed: Multiaddr, by observer: PeerID, local: Multiaddr?) -> ObservedAddressBook.RecordOutcome {
        book.withLockedValue { $0.record(observed, by: observer, local: local, now: .now()) }
    }

    /// The confirmed observed addresses now, the best supported first.
    public var confirmed: [Multiaddr] {
        book.withLockedValue { $0.confirmed(now: .now()) }
    }

    /// Every tracked address now.
    public var entries: [ObservedAddressBook.Entry] {
        book.withLockedValue { $0.entries(now: .now()) }
    }

    /// How many distinct peers confirm an address. Lowering it takes effect at once.
    public var confirmations: Int {
        get { book.withLockedValue { $0.configuration.confirmations } }
        set { book.withLockedValue { $0.configuration.confirmations = max(1, newValue) } }
    }
}

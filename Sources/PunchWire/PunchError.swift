/// The one shape of every Punch error (issue 16, "One coded error shape across modules").
///
/// Each module has its own error type (``WireError``, `PunchCryptoError`, `TransportError`,
/// `DiscoveryError`, `PortMappingError`, `RelayError`, `HolePunchError`, `NodeError`, and the
/// lab's `LabError`), so `catch let error as RelayError` keeps working, but every one of them is
/// this: a stable ``PunchErrorCode`` whose name carries the module's prefix (`relay.refused`,
/// `wire.truncated`, `host.dialFailed`), and a message for people that says what happened and
/// what to do. Errors compare equal when their codes do. The CLI prints `code.name` as the JSON
/// field `code`.
///
/// ```swift
/// do { try await node.connect(to: peer) }
/// catch let error as any PunchError { print(error.code.name, error.message) }
/// ```
public protocol PunchError: Error, Hashable, Sendable, CustomStringConvertible {
    associatedtype Code: PunchErrorCode
    /// What kind of failure this is; stable across releases.
    var code: Code { get }
    /// What happened and what to do about it; for people, may change between releases.
    var message: String { get }
}

/// The code of a ``PunchError``: a stable name, `<module>.<kind>`. New codes may appear in any
/// release, so a `switch` over codes needs a `default` branch.
public protocol PunchErrorCode: Hashable, Sendable, CustomStringConvertible {
    /// The stable, prefixed name, for logs and JSON (`relay.refused`).
    var name: String { get }
    /// A code with this name. Codes are defined as static members next to the code that
    /// throws them.
    init(_ name: String)
}

extension PunchErrorCode {
    public var description: String { name }
    /// The module part of the name: what comes before the first `.`.
    public var domain: Substring { name.prefix { $0 != "." } }
}

extension PunchError {
    public var description: String { "\(code.name): \(message)" }
}

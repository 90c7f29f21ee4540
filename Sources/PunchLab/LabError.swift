import PunchWire

/// An error from the NAT lab: a missing privilege or tool, a command that failed, a process that
/// did not answer in time.
///
/// Compare errors by ``code``; the ``message`` says which command failed and why, for people.
/// New codes may appear in any release, so a `switch` over codes needs a `default` branch.
///
/// ```swift
/// do { _ = try NATLab.build() }
/// catch let error as LabError where error.code == .notRoot { print(error.message) }
/// ```
public struct LabError: PunchError {
    /// A stable identifier for the kind of failure.
    public struct Code: PunchErrorCode {
        /// The code's stable name, for logs and JSON.
        public let name: String
        public init(_ name: String) { self.name = name }

        /// The process is not root; network namespaces and nftables need it.
        public static let notRoot = Code("lab.notRoot")
        /// The lab runs on Linux only.
        public static let unsupportedPlatform = Code("lab.unsupportedPlatform")
        /// A program the lab needs (ip, nft, conntrack, turnserver, ...) is not installed.
        public static let toolMissing = Code("lab.toolMissing")
        /// A command the lab ran exited with a failure status; the message has its stderr.
        public static let commandFailed = Code("lab.commandFailed")
        /// A command or process did not finish, or did not print what was expected, in time.
        public static let timedOut = Code("lab.timedOut")
        /// A process exited before printing what was expected.
        public static let processExited = Code("lab.processExited")
        /// An argument is out of range (a loss above 100 %, a malformed prefix, ...).
        public static let invalidArgument = Code("lab.invalidArgument")
        /// No lab with the given prefix is up.
        public static let labNotFound = Code("lab.labNotFound")
        /// A lab with the given prefix is already up and owned by a live process.
        public static let labExists = Code("lab.labExists")
        /// The lab's state file under `/run/punch-lab` cannot be read or written.
        public static let stateUnreadable = Code("lab.stateUnreadable")
        /// A service (coturn, miniupnpd, the delay program) did not start.
        public static let serviceFailed = Code("lab.serviceFailed")
        /// SIGINT or SIGTERM arrived while the lab was being built or changed.
        public static let interrupted = Code("lab.interrupted")
    }

    /// What kind of failure this is; stable across releases.
    public let code: Code
    /// What happened and what to do about it.
    public let message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// Errors are equal when their codes are; the message is not compared.
    public static func == (lhs: LabError, rhs: LabError) -> Bool { lhs.code == rhs.code }
    /// Hashes the code only, consistently with ``==(_:_:)``.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

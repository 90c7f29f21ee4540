/// Facts about this build of Punch.
public enum PunchVersion {
    /// The version of this Punch release, used in identify's agent version (`punch/<version>`).
    public static let current = "0.1.0"
    /// The identify agent version string this build announces.
    public static var agentVersion: String { "punch/\(current)" }
}

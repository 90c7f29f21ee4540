import ArgumentParser
import Foundation
import Punch

/// Prints one JSON object per line for scripts (`--json`), with stable, sorted keys.
enum JSONLine {
    static func print(_ object: [String: Any]) {
        // Only strings, numbers, booleans, arrays and dictionaries are passed here, which
        // JSONSerialization always accepts.
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}

/// A failure the CLI reports to the user: the message on stderr, and with `--json` a JSON line
/// `{"event":"error","code":...,"message":...}` on stdout, then exit status 1.
struct CommandFailure: Error {
    let code: String
    let message: String

    static func report(_ error: any Error, json: Bool) -> ExitCode {
        let (code, message): (String, String) =
            error.coded ?? ("error", "\(error)")
        FileHandle.standardError.write(Data("punch: \(message)\n".utf8))
        if json { JSONLine.print(["event": "error", "code": code, "message": message]) }
        return ExitCode.failure
    }
}

/// The CLI's own errors that carry a stable code and a human message (the library's are
/// ``PunchError``s, and ``Swift/Error/codeAndMessage`` reads both).
protocol CodedError {
    var codeName: String { get }
    var message: String { get }
}

extension Error {
    /// The stable code and the message of a ``PunchError`` or a ``CodedError``; `nil` otherwise.
    var coded: (code: String, message: String)? {
        switch self {
        // A peer the node could not reach: the code of the failure underneath (a wrong PeerID is
        // `noise.peerIDMismatch`, a refused circuit `relay.refused`), with the node's message.
        case let error as NodeError where error.code == .unreachable && error.underlying?.coded != nil:
            (error.underlying!.coded!.code, error.message)
        case let error as any PunchError: (error.code.name, error.message)
        case let error as CodedError: (error.codeName, error.message)
        default: nil
        }
    }
}

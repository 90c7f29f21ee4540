import ArgumentParser
import Foundation

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
            switch error {
            case let error as CodedError: (error.codeName, error.message)
            default: ("error", "\(error)")
            }
        FileHandle.standardError.write(Data("punch: \(message)\n".utf8))
        if json { JSONLine.print(["event": "error", "code": code, "message": message]) }
        return ExitCode.failure
    }
}

/// Errors from Punch's modules that carry a stable code and a human message.
protocol CodedError {
    var codeName: String { get }
    var message: String { get }
}

import ArgumentParser
import Foundation
import PunchLab

#if canImport(Glibc)
import Glibc
#endif

/// `punch lab exec`: runs a command in one of the lab's namespaces.
struct LabExecCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command in a lab host's network namespace.",
        discussion: """
            HOST is inet, srv, r1, r2, h1, h1b or h2. The command replaces punch (its exit \
            status is punch's), unless --json is given: then punch waits for it and prints one \
            JSON object with its exit status and output.

            Examples:
              punch lab exec h1 -- turnutils_stunclient 203.0.113.10
              punch lab exec r1 -- nft list ruleset
              punch lab exec --json h2 -- ip -4 -brief addr
              {"command":["ip","-4","-brief","addr"],"host":"h2","status":0,"stderr":"",...}
            """
    )

    @Argument(help: ArgumentHelp("The host: inet, srv, r1, r2, h1, h1b or h2.", valueName: "host"))
    var host: LabHost

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command and its arguments, after --.", valueName: "command"))
    var command: [String]

    @OptionGroup var common: LabCommonOptions

    func validate() throws {
        guard !command.isEmpty else { throw ValidationError("give the command after --, e.g. punch lab exec h1 -- ip addr") }
    }

    func run() throws {
        let lab: NATLab
        do {
            lab = try NATLab.attach(prefix: common.prefix)
        } catch {
            throw CommandFailure.report(error, json: common.json)
        }
        if common.json {
            let output: LabOutput
            do {
                output = try lab.run(host, command, timeout: .seconds(3600))
            } catch {
                throw CommandFailure.report(error, json: true)
            }
            JSONLine.print(["host": host.rawValue, "command": command, "status": Int(output.status), "stdout": output.stdout, "stderr": output.stderr])
            if output.status != 0 { throw ExitCode(output.status) }
            return
        }
        let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "/usr/sbin/ip"
        let arguments = ["ip", "netns", "exec", lab.namespace(host)] + command
        let cArguments = arguments.map { strdup($0) } + [nil]
        execv(ip, cArguments)
        let reason = String(cString: strerror(errno))
        throw CommandFailure.report(LabError(.commandFailed, "cannot run ip netns exec: \(reason)"), json: false)
    }
}

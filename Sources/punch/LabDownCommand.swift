import ArgumentParser
import Foundation
import PunchLab

/// `punch lab down`: removes the lab.
struct LabDownCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract: "Remove the lab: end its processes, delete its namespaces and links.",
        discussion: """
            Safe to run when no lab is up.

            Examples:
              punch lab down
              punch lab down --json
              {"event":"down","namespaces_removed":["punch-inet",...],"prefix":"punch-"}
            """
    )

    @OptionGroup var common: LabCommonOptions

    func run() throws {
        let interrupts = LabInterrupts()
        defer { interrupts.restore() }
        do {
            try NATLab.checkPrerequisites()
        } catch {
            throw CommandFailure.report(error, json: common.json)
        }
        let removed = NATLab.tearDown(prefix: common.prefix)
        if common.json {
            JSONLine.print(["event": "down", "prefix": common.prefix, "namespaces_removed": removed])
        } else {
            print(removed.isEmpty ? "no lab with prefix \(common.prefix) was up" : "lab \(common.prefix) is down (\(removed.count) namespaces removed)")
        }
    }
}

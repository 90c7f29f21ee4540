import ArgumentParser
import Foundation
import PunchLab

/// `punch lab status`: what the lab is doing.
struct LabStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show whether the lab is up, each router's behaviour and the services running.",
        discussion: """
            Exits 0 whether or not the lab is up; with --json, "up" says which.

            Examples:
              punch lab status
              punch lab status --json
              {"event":"status","prefix":"punch-","up":false}
            """
    )

    @OptionGroup var common: LabCommonOptions

    func run() throws {
        guard NATLab.exists(prefix: common.prefix) else {
            if common.json {
                JSONLine.print(["event": "status", "prefix": common.prefix, "up": false])
            } else {
                print("no lab with prefix \(common.prefix) is up (start one with `punch lab up`)")
            }
            return
        }
        let lab: NATLab
        do {
            lab = try NATLab.attach(prefix: common.prefix)
        } catch {
            throw CommandFailure.report(error, json: common.json)
        }
        if common.json {
            JSONLine.print(LabReport.object(lab, event: "status"))
        } else {
            print("lab \(lab.prefix) is up")
            print(LabReport.text(lab))
        }
    }
}

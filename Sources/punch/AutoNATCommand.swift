import ArgumentParser
import Foundation
import Punch

/// `punch autonat`: ask an AutoNAT v2 server whether our addresses are reachable.
struct AutoNATCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autonat",
        abstract: "Ask an AutoNAT v2 server to dial our addresses back, and report which are reachable.",
        discussion: """
            Listens (so that the dial to the server leaves from the listening port, and there is \
            something to dial back), connects to the server, and asks it about each --address; \
            without --address, about the address the server observes us at (identify), once \
            --confirmations distinct peers agree on it (here there is one: the server).

            Prints one line per address; with --json one object per line:
              {"address":"/ip4/203.0.113.1/tcp/4001","reachable":false,"status":"unreachable",
               "server":"12D3KooW...","dial_data_bytes":0,"dial_back_from":null,"dial_back_to":null}
            `reachable` is true or false when the server found out, null otherwise (`status` is
            then refused, rejected, dial_back_failed or failed, with `code` and `message`).
            Exits 1 if a check failed.

            Examples:
              punch autonat --server /ip4/203.0.113.10/tcp/4001/p2p/12D3KooW... --json
              punch autonat --server /ip4/203.0.113.10/tcp/4001/p2p/12D3KooW... --listen /ip4/0.0.0.0/tcp/4001 --address /ip4/198.51.100.4/tcp/4001
            """
    )

    @Option(name: .long, help: ArgumentHelp("The AutoNAT v2 server, ending in /p2p/<PeerID>.", valueName: "multiaddr"))
    var server: String

    @Option(name: .long, help: ArgumentHelp("An address of ours to check; repeat for more (most important first).", valueName: "multiaddr"))
    var address: [String] = []

    @Option(name: .long, help: ArgumentHelp("A TCP multiaddr to listen on; repeat for more.", valueName: "multiaddr"))
    var listen: [String] = ["/ip4/0.0.0.0/tcp/0"]

    @Option(name: .long, help: ArgumentHelp("Distinct peers that must report an observed address before it is checked.", valueName: "n"))
    var confirmations: Int = 1

    @Option(name: .long, help: ArgumentHelp("The identity key file; a fresh key when not given.", valueName: "file"))
    var identity: String?

    @Flag(name: .long, help: "Print one JSON object per line.")
    var json = false

    func validate() throws {
        guard confirmations >= 1 else { throw ValidationError("--confirmations must be at least 1") }
    }

    func run() async throws {
        var host: PunchHost?
        do {
            let key = try identity.map { try IdentityKeyFile.loadOrCreate(at: $0).key } ?? PrivateKey.generate()
            let node = PunchHost(configuration: HostConfiguration(identity: key))
            host = node
            for text in listen { try await node.listen(Multiaddr(text)) }
            let client = try AutoNATClient(host: node)
            let connection = try await node.dial(Multiaddr(server))
            var addresses = try address.map { try Multiaddr($0) }
            if addresses.isEmpty {
                var bookConfiguration = ObservedAddressBook.Configuration()
                bookConfiguration.confirmations = confirmations
                let tracker = try ObservedAddressTracker(configuration: bookConfiguration)
                tracker.record(try await connection.identify(), on: connection)
                addresses = tracker.confirmed
                guard !addresses.isEmpty else {
                    throw DiscoveryError(
                        .autonatNoAddresses,
                        "no observed address is confirmed by \(confirmations) peers (\(tracker.entries.map { "\($0.address): \($0.observers)" })); pass --address")
                }
            }
            let results = try await client.check(addresses: addresses, via: connection)
            for result in results { print(result) }
            await node.close()
            if results.contains(where: { $0.status == .failed }) { throw ExitCode.failure }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            await host?.close()
            throw CommandFailure.report(error, json: json)
        }
    }

    private func print(_ result: AutoNATCheckResult) {
        if json {
            JSONLine.print(AutoNATCommand.object(result))
        } else {
            var line = "\(result.address): \(result.status.rawValue) (server \(result.server))"
            if let from = result.dialBackRemoteAddress { line += ", dialed back from \(from)" }
            if result.dialDataBytes > 0 { line += ", \(result.dialDataBytes) bytes of dial data" }
            if let error = result.error { line += ": \(error.message)" }
            Swift.print(line)
        }
        fflush(nil)
    }

    /// The JSON object of one result; shared with `punch netcheck`.
    static func object(_ result: AutoNATCheckResult) -> [String: Any] {
        var object: [String: Any] = [
            "address": "\(result.address)", "status": result.status.rawValue, "server": "\(result.server)",
            "reachable": result.reachable.map { $0 as Any } ?? NSNull(),
            "dial_data_bytes": result.dialDataBytes,
            "dial_back_from": result.dialBackRemoteAddress.map { "\($0)" as Any } ?? NSNull(),
            "dial_back_to": result.dialBackLocalAddress.map { "\($0)" as Any } ?? NSNull(),
        ]
        if let error = result.error {
            object["code"] = error.code.name
            object["message"] = error.message
        }
        return object
    }
}

/// `punch autonat-server`: serve AutoNAT v2 dial-backs.
struct AutoNATServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autonat-server",
        abstract: "Serve AutoNAT v2: dial clients back on the addresses they ask about.",
        discussion: """
            Dial-backs leave from ephemeral ports on separate connections, never from the \
            listening port. A requested address whose IP differs from the client's costs it \
            30 000 bytes of dial data first (the spec's amplification guard). Private and \
            loopback addresses are refused unless --allow-private is given. Runs until \
            interrupted.

            With --json, the first line is
              {"event":"listening","peer_id":"12D3KooW...","addrs":[...]}
            and each request prints
              {"event":"request","client":...,"dialed":...,"dial_data_bytes":...,"status":"OK",
               "dial_status":"OK","dial_back_local_addr":...}

            Examples:
              punch autonat-server --listen /ip4/0.0.0.0/tcp/4001 --json
              punch autonat-server --listen /ip4/127.0.0.1/tcp/4001 --allow-private
            """
    )

    @Option(name: .long, help: ArgumentHelp("A TCP multiaddr to listen on; repeat for more.", valueName: "multiaddr"))
    var listen: [String] = ["/ip4/0.0.0.0/tcp/4001"]

    @Option(name: .long, help: ArgumentHelp("The identity key file; a fresh key when not given.", valueName: "file"))
    var identity: String?

    @Flag(name: .long, help: "Dial private, loopback and link-local addresses too (labs, LANs).")
    var allowPrivate = false

    @Flag(name: .long, help: "Print one JSON object per line.")
    var json = false

    func run() async throws {
        do {
            let key = try identity.map { try IdentityKeyFile.loadOrCreate(at: $0).key } ?? PrivateKey.generate()
            let host = PunchHost(configuration: HostConfiguration(identity: key))
            let output = EventPrinter(json: json)
            var configuration = AutoNATServerConfiguration()
            configuration.allowPrivateAddresses = allowPrivate
            let json = self.json
            try AutoNATServer.serve(on: host, configuration: configuration) { record in
                AutoNATServerCommand.print(record, json: json)
            }
            var addresses: [Multiaddr] = []
            for text in listen { addresses += try await host.listen(Multiaddr(text)) }
            output.listening(host.peerID, addresses)
            await SignalWaiter.waitForTermination()
            await host.close()
        } catch {
            throw CommandFailure.report(error, json: json)
        }
    }

    static func print(_ record: AutoNATServerRecord, json: Bool, event: String = "request") {
        if json {
            var object: [String: Any] = [
                "event": event, "client": "\(record.client)",
                "dialed": record.dialed.map { "\($0)" as Any } ?? NSNull(),
                "dial_data_bytes": record.dialDataBytes,
                "status": record.responseStatus.map { $0 as Any } ?? NSNull(),
                "dial_status": record.dialStatus.map { $0 as Any } ?? NSNull(),
                "dial_back_local_addr": record.dialBackLocalAddress.map { "\($0)" as Any } ?? NSNull(),
            ]
            if let error = record.error {
                object["code"] = error.code.name
                object["message"] = error.message
            }
            JSONLine.print(object)
        } else {
            Swift.print(
                "\(event == "request" ? "request" : "AutoNAT request") from \(record.client): dialed \(record.dialed.map { "\($0)" } ?? "nothing"), "
                    + "\(record.responseStatus ?? "no response")/\(record.dialStatus ?? "-")"
                    + (record.error.map { ": \($0.message)" } ?? ""))
        }
        fflush(nil)
    }
}

import ArgumentParser
import Foundation
import Punch

/// `punch id`: shows this node's PeerID, creating its identity key on first use.
struct IdentityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "id",
        abstract: "Print this node's PeerID, creating its identity key file if there is none.",
        discussion: """
            The identity key file holds a libp2p Ed25519 PrivateKey protobuf, mode 0600. A node \
            started with the same file keeps the same PeerID.

            Examples:
              punch id
              punch id --identity ./relay.key --json
              {"created":true,"identity_file":"./relay.key","peer_id":"12D3KooW...","public_key":"CAESI..."}
            """
    )

    @Option(name: .long, help: ArgumentHelp("The identity key file.", valueName: "file"))
    var identity: String = IdentityCommand.defaultIdentityPath

    @Flag(name: .long, help: "Print one JSON object: peer_id, public_key (base64 PublicKey protobuf), identity_file, created.")
    var json = false

    /// `$XDG_CONFIG_HOME/punch/identity.key`, or `~/.config/punch/identity.key`.
    static var defaultIdentityPath: String {
        let environment = ProcessInfo.processInfo.environment
        if let config = environment["XDG_CONFIG_HOME"], !config.isEmpty { return config + "/punch/identity.key" }
        return (environment["HOME"] ?? ".") + "/.config/punch/identity.key"
    }

    func run() throws {
        let key: PrivateKey
        let created: Bool
        do {
            (key, created) = try IdentityKeyFile.loadOrCreate(at: identity)
        } catch {
            throw CommandFailure.report(error, json: json)
        }
        let publicKey = Data(key.publicKey.protobufEncoded).base64EncodedString()
        if json {
            JSONLine.print([
                "peer_id": key.peerID.description,
                "public_key": publicKey,
                "identity_file": identity,
                "created": created,
            ])
        } else {
            print(key.peerID)
            let note = created ? "created" : "loaded"
            FileHandle.standardError.write(Data("identity file \(identity) (\(note))\n".utf8))
        }
    }
}

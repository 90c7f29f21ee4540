import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Long-running helpers: coturn, miniupnpd, the probe server and the delay program. Each runs
/// in a namespace with its output in a log file in the lab's state directory, and is recorded in
/// the lab's state, so a later process (the next `punch lab` command) can see and stop it.
extension NATLab {
    /// The services the lab started, running or not.
    public var services: [LabService] {
        currentState().services.sorted { $0.key < $1.key }.map { name, record in
            LabService(name: name, host: record.host, pid: record.process.pid, isRunning: record.process.isAlive,
                       logFile: record.log, arguments: record.arguments)
        }
    }

    /// Starts coturn as a STUN server in `srv`, twice: single-address mode on
    /// 203.0.113.10:3478 (UDP and TCP, RFC 5780 off, for plain binding requests such as
    /// `turnutils_stunclient 203.0.113.10`), and RFC 5780 mode on 203.0.113.10 and
    /// 203.0.113.11, ports 3490 and 3491 (for `turnutils_natdiscovery -m -f -p 3490 203.0.113.10`).
    /// Returns once both listen. Does nothing if they already run.
    /// - Throws: ``LabError/Code/toolMissing`` without coturn, ``LabError/Code/serviceFailed``.
    public func startSTUN() throws {
        let turnserver = try SystemCommand.locate("turnserver")
        let common = ["-n", "--stun-only", "--no-tls", "--no-dtls", "--no-cli", "--log-file", "stdout", "--simple-log"]
        let server = LabAddress.server
        let alternate = LabAddress.alternateServer
        if !isRunning("stun") {
            try startService("stun", on: .srv, [turnserver] + common + [
                "--listening-ip", server, "--listening-port", "\(LabAddress.stunPort)", "--no-rfc5780",
                "--pidfile", "\(directory)/stun.pid", "--db", "\(directory)/stun.db",
            ])
        }
        if !isRunning("stun-rfc5780") {
            try startService("stun-rfc5780", on: .srv, [turnserver] + common + [
                "--listening-ip", server, "--listening-ip", alternate, "--listening-port", "\(LabAddress.rfc5780Port)",
                "--pidfile", "\(directory)/stun-rfc5780.pid", "--db", "\(directory)/stun-rfc5780.db",
            ])
        }
        try waitUntilListening("stun", udp: ["\(server):\(LabAddress.stunPort)"], tcp: ["\(server):\(LabAddress.stunPort)"])
        try waitUntilListening("stun-rfc5780", udp: [
            "\(server):\(LabAddress.rfc5780Port)", "\(server):\(LabAddress.rfc5780Port + 1)",
            "\(alternate):\(LabAddress.rfc5780Port)", "\(alternate):\(LabAddress.rfc5780Port + 1)",
        ])
    }

    /// Starts miniupnpd in a router: a UPnP-IGD (HTTP on the LAN address, port 5000) and
    /// NAT-PMP/PCP (port 5351) gateway that maps ports for hosts of the router's LAN
    /// (1024-65535 only). Starts coturn first if it does not run: miniupnpd learns the public
    /// address by STUN, because it refuses 203.0.113.0/24 as a configured external address.
    ///
    /// The reference clients work against it: `upnpc -i -a @ 48000 48000 UDP 300` (`-i`: the
    /// reserved external address makes the IGD look disconnected) and
    /// `natpmpc -g 10.0.1.1 -a 48010 48010 udp 120`. PCP's minimum lifetime is lowered from
    /// miniupnpd's 120 s to 2 s (`min_lifetime=2`) so renewal tests need not wait minutes;
    /// NAT-PMP and UPnP leases grant short lifetimes as asked. Returns once it listens.
    /// - Throws: ``LabError/Code/toolMissing`` without miniupnpd, ``LabError/Code/serviceFailed``.
    public func startUPnP(router: LabRouter = .r1) throws {
        let name = "upnp-\(router.rawValue)"
        if isRunning(name) { return }
        let miniupnpd = try SystemCommand.locate("miniupnpd")
        try startSTUN()
        // Debian's nft_init.sh is broken (exits 127), so the table miniupnpd fills is made here.
        try SystemCommand.run("nft", ["-f", "-"], in: namespace(router.host), input: """
            table inet upnp
            delete table inet upnp
            table inet upnp {
              chain forward {
                type filter hook forward priority filter - 1; policy accept;
                jump miniupnpd
              }
              chain miniupnpd {
              }
              chain prerouting {
                type nat hook prerouting priority dstnat - 1; policy accept;
                jump prerouting_miniupnpd
              }
              chain postrouting {
                type nat hook postrouting priority srcnat - 1; policy accept;
                jump postrouting_miniupnpd
              }
              chain prerouting_miniupnpd {
              }
              chain postrouting_miniupnpd {
              }
            }

            """)
        try updateState { $0.upnpRouters.insert(router.rawValue) }
        try reloadRules(router)
        let configuration = "\(directory)/\(name).conf"
        let text = """
            ext_ifname=wan
            listening_ip=lan
            http_port=5000
            enable_natpmp=yes
            enable_upnp=yes
            secure_mode=yes
            min_lifetime=2
            ext_perform_stun=yes
            ext_stun_host=\(LabAddress.server)
            ext_stun_port=\(LabAddress.rfc5780Port)
            lease_file=\(directory)/\(name).leases
            upnp_table_name=upnp
            upnp_nat_table_name=upnp
            upnp_forward_chain=miniupnpd
            upnp_nat_chain=prerouting_miniupnpd
            upnp_nat_postrouting_chain=postrouting_miniupnpd
            allow 1024-65535 \(router.lanSubnet) 1024-65535
            deny 0-65535 0.0.0.0/0 0-65535

            """
        do {
            try text.write(toFile: configuration, atomically: true, encoding: .utf8)
        } catch {
            throw LabError(.stateUnreadable, "cannot write \(configuration): \(error)")
        }
        try startService(name, on: router.host, [miniupnpd, "-f", configuration, "-d", "-P", "\(directory)/\(name).pid"])
        // miniupnpd opens its sockets after its STUN self-test (up to about 6 s).
        try waitUntilListening(name, udp: ["\(router.lanAddress):5351"], tcp: ["*%lan:5000"], timeout: 15)
    }

    /// Starts the probe server (``LabScripts/probeServer``) in `srv`: reflector and filtering
    /// tester on UDP 203.0.113.10 and .11, ports 7000 and 7001, echo, and UDP and TCP rendezvous
    /// on 203.0.113.10:7000. Returns once it listens. Does nothing if it already runs.
    public func startProbeServer() throws {
        if isRunning("probe-server") { return }
        _ = try SystemCommand.locate("python3")
        try startService("probe-server", on: .srv, [
            LabScripts.python, LabScripts.probeServer,
            "--primary", LabAddress.server, "--alternate", LabAddress.alternateServer,
            "--port", "\(LabAddress.probePort)", "--alt-port", "\(LabAddress.probeAlternatePort)",
        ])
        try waitForLog("probe-server", containing: #""event": "ready""#)
    }

    /// Stops a service the lab started (SIGTERM, then SIGKILL after two seconds).
    public func stopService(_ name: String) {
        guard let record = currentState().services[name] else { return }
        record.process.terminate(grace: 2)
        try? updateState { $0.services[name] = nil }
    }

    // MARK: - Delay

    /// Runs the delay program in the router and sends every IPv4 packet that enters it (on
    /// `wan` and on `lan`) through NFQUEUE 0, so a packet waits once per direction.
    func startDelay(_ router: LabRouter, _ options: NATOptions) throws {
        let name = "delay-\(router.rawValue)"
        _ = try SystemCommand.locate("iptables")
        _ = try SystemCommand.locate("python3")
        try startService(name, on: router.host, [
            LabScripts.python, LabScripts.delayProgram, "--queue", "0",
            "--delay-ms", "\(options.delayMilliseconds)", "--jitter-ms", "\(options.jitterMilliseconds)",
        ])
        try waitForLog(name, containing: #""event": "ready""#)
        // nft's own `queue` statement is not in this kernel; iptables-nft's NFQUEUE target is.
        // --queue-bypass: should the program die, packets pass undelayed instead of being dropped.
        for interface in ["wan", "lan"] {
            try SystemCommand.run(
                "iptables", ["-t", "raw", "-A", "PREROUTING", "-i", interface, "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"],
                in: namespace(router.host))
        }
    }

    /// Whether the router's delay program runs.
    func isDelayRunning(_ router: LabRouter) -> Bool { isRunning("delay-\(router.rawValue)") }

    /// Takes the NFQUEUE rules out and stops the delay program, which lets every held packet go.
    func stopDelay(_ router: LabRouter) throws {
        let name = "delay-\(router.rawValue)"
        guard currentState().services[name] != nil else { return }
        try SystemCommand.run("iptables", ["-t", "raw", "-F", "PREROUTING"], in: namespace(router.host))
        stopService(name)
    }

    // MARK: - Service plumbing

    private func isRunning(_ name: String) -> Bool {
        currentState().services[name]?.process.isAlive ?? false
    }

    /// Starts a program in a namespace with stdout and stderr in `DIRECTORY/NAME.log`, and
    /// records it in the lab's state.
    private func startService(_ name: String, on host: LabHost, _ arguments: [String]) throws {
        try requireNamespace(host)
        stopService(name)
        let log = "\(directory)/\(name).log"
        guard FileManager.default.createFile(atPath: log, contents: nil), let output = FileHandle(forWritingAtPath: log) else {
            throw LabError(.stateUnreadable, "cannot create the log file \(log)")
        }
        defer { try? output.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try SystemCommand.locate("ip"))
        process.arguments = ["netns", "exec", namespace(host)] + arguments
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        do {
            try process.runWithSignalsUnblocked()
        } catch {
            throw LabError(.serviceFailed, "cannot start \(name) (`\(arguments.joined(separator: " "))`): \(error)")
        }
        guard let identity = ProcessIdentity(pid: process.processIdentifier) else {
            throw LabError(.serviceFailed, "\(name) exited at once\(logTail(log))")
        }
        try updateState { $0.services[name] = LabState.ServiceRecord(host: host, process: identity, arguments: arguments, log: log) }
    }

    /// Waits until the service's log has a line containing `text`.
    private func waitForLog(_ name: String, containing text: String, timeout: Double = 10) throws {
        guard let record = currentState().services[name] else { return }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while true {
            let log = (try? String(contentsOfFile: record.log, encoding: .utf8)) ?? ""
            if log.contains(text) { return }
            if !record.process.isAlive {
                throw LabError(.serviceFailed, "\(name) exited before it was ready\(logTail(record.log))")
            }
            if Date() > deadline {
                throw LabError(.serviceFailed, "\(name) was not ready after \(timeout) s\(logTail(record.log))")
            }
            usleep(20_000)
        }
    }

    /// Waits until the service's namespace has sockets listening on the given local addresses
    /// (as `ss` prints them, such as `203.0.113.10:3478` or `*%lan:5000`).
    private func waitUntilListening(_ name: String, udp: [String] = [], tcp: [String] = [], timeout: Double = 10) throws {
        guard let record = currentState().services[name] else { return }
        let ns = namespace(record.host)
        let deadline = Date(timeIntervalSinceNow: timeout)
        while true {
            let udpOpen = localAddresses(try SystemCommand.run("ss", ["-H", "-l", "-n", "-u"], in: ns))
            let tcpOpen = localAddresses(try SystemCommand.run("ss", ["-H", "-l", "-n", "-t"], in: ns))
            if udpOpen.isSuperset(of: udp), tcpOpen.isSuperset(of: tcp) { return }
            if !record.process.isAlive {
                throw LabError(.serviceFailed, "\(name) exited before it listened\(logTail(record.log))")
            }
            if Date() > deadline {
                let missing = Set(udp).subtracting(udpOpen).map { "udp \($0)" } + Set(tcp).subtracting(tcpOpen).map { "tcp \($0)" }
                throw LabError(.serviceFailed, "\(name) does not listen on \(missing.sorted().joined(separator: ", ")) after \(timeout) s\(logTail(record.log))")
            }
            usleep(50_000)
        }
    }

    /// The local-address column of `ss -H -l -n` output.
    private func localAddresses(_ output: String) -> Set<String> {
        Set(output.split(whereSeparator: \.isNewline).compactMap { line in
            let fields = line.split(whereSeparator: \.isWhitespace)
            return fields.count > 3 ? String(fields[3]) : nil
        })
    }

    private func logTail(_ path: String) -> String {
        let text = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "" : "; its log (\(path)) ends: \(text.suffix(1500))"
    }
}

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A NAT lab: network namespaces wired as two home networks behind real kernel NATs, and a
/// public server, for tests and demos. Linux only; needs root.
///
/// ```
///  h1  10.0.1.2 ──┐                                                  ┌── h2 10.0.2.2
///  h1b 10.0.1.3 ──┴ lan 10.0.1.1 [r1] wan 203.0.113.1 ── inet ── wan 203.0.113.2 [r2] lan 10.0.2.1
///                                                         │
///                                          srv 203.0.113.10, 203.0.113.11
/// ```
///
/// Each namespace is named ``prefix`` plus the ``LabHost`` name. Each router's NAT behaviour
/// (``NATMode``) and options (``NATOptions``: hairpin, timeouts, loss, delay) can be changed
/// at any time with ``setMode(_:_:options:)``.
///
/// ```swift
/// let lab = try NATLab.build(r1: .fullCone, r2: .symmetric)
/// defer { lab.tearDown() }
/// try lab.startSTUN()
/// let output = try lab.run(.h1, ["turnutils_stunclient", "203.0.113.10"])
/// ```
///
/// A lab belongs to the process that built it: ``tearDown()`` removes it, and if the process
/// dies first, the next ``build(prefix:r1:r2:options:persistent:)`` (or ``cleanUpStale()``)
/// removes it. A *persistent* lab (the one `punch lab up` builds) stays until it is torn down.
public final class NATLab: Sendable {
    /// The prefix of every namespace name, such as `pl-k3x9q2ab-` or `punch-`.
    public let prefix: String
    private let state: Locked<LabState>

    private init(state: LabState) {
        self.prefix = state.prefix
        self.state = Locked(state)
    }

    // MARK: - Building and finding labs

    /// Throws unless the lab can run here: Linux, root, and `ip`, `nft`, `conntrack` and
    /// `sysctl` installed. ``build(prefix:r1:r2:options:persistent:)`` checks this itself.
    /// - Throws: ``LabError/Code/notRoot`` ("the NAT lab needs root (network namespaces,
    ///   nftables)"), ``LabError/Code/toolMissing`` naming the package, or
    ///   ``LabError/Code/unsupportedPlatform``.
    public static func checkPrerequisites() throws {
        try SystemCommand.checkPrerequisites()
    }

    /// Builds a lab: namespaces, links, addresses, routes and both routers' NAT rules.
    ///
    /// Removes stale labs first (see ``cleanUpStale()``). Takes well under a second.
    /// - Parameters:
    ///   - prefix: the namespace prefix; `nil` makes a unique one (`pl-` and 8 random
    ///     characters and `-`), so two labs never collide.
    ///   - r1: the NAT behaviour of router `r1`.
    ///   - r2: the NAT behaviour of router `r2`.
    ///   - options: the options of both routers.
    ///   - persistent: `false` (the default): the lab belongs to this process, and is removed by
    ///     a later build if the process dies without calling ``tearDown()``. `true`: it stays
    ///     until ``tearDown()`` or ``tearDown(prefix:)``, whatever happens to this process.
    /// - Returns: the running lab.
    /// - Throws: ``LabError`` with ``LabError/Code/notRoot``, ``LabError/Code/toolMissing``,
    ///   ``LabError/Code/labExists`` if a live lab has the prefix, or
    ///   ``LabError/Code/commandFailed``. Nothing of a failed build is left behind.
    public static func build(
        prefix: String? = nil,
        r1: NATMode = .portRestricted,
        r2: NATMode = .portRestricted,
        options: NATOptions = NATOptions(),
        persistent: Bool = false
    ) throws -> NATLab {
        try SystemCommand.checkPrerequisites()
        try options.validate()
        let prefix = try prefix.map(validated) ?? generatedPrefix()
        cleanUpStale()
        if exists(prefix: prefix) {
            if let existing = try? LabState.load(prefix: prefix), !existing.isStale {
                let owner = existing.owner.map { "process \($0.pid)" } ?? "nobody (persistent)"
                throw LabError(.labExists, "a lab with prefix \(prefix) is up, owned by \(owner); tear it down first (`punch lab down --prefix \(prefix)`)")
            }
            tearDown(prefix: prefix)
        }
        let state = LabState(
            prefix: prefix,
            owner: persistent ? nil : ProcessIdentity.current,
            created: Date(),
            routers: [
                LabRouter.r1.rawValue: RouterConfiguration(mode: r1, options: options),
                LabRouter.r2.rawValue: RouterConfiguration(mode: r2, options: options),
            ]
        )
        // The state goes first: whatever exists of the lab from here on can be found and cleaned.
        try state.save()
        let lab = NATLab(state: state)
        do {
            try lab.createTopology()
            try lab.apply(.r1, RouterConfiguration(mode: r1, options: options))
            try lab.apply(.r2, RouterConfiguration(mode: r2, options: options))
        } catch {
            lab.tearDown()
            throw error
        }
        return lab
    }

    /// Opens a lab that is already up, such as the one `punch lab up` built.
    /// - Throws: ``LabError/Code/labNotFound`` if no lab with the prefix is up.
    public static func attach(prefix: String) throws -> NATLab {
        try SystemCommand.checkPrerequisites()
        guard let state = try LabState.load(prefix: prefix), exists(prefix: prefix) else {
            throw LabError(.labNotFound, "no lab with prefix \(prefix) is up; start one with `punch lab up`")
        }
        return NATLab(state: state)
    }

    /// Whether any namespace of a lab with this prefix exists.
    public static func exists(prefix: String) -> Bool {
        let present = Set(namespaceNames())
        return LabHost.allCases.contains { present.contains(prefix + $0.rawValue) }
    }

    /// Removes every lab whose owner process has died, and namespaces of generated prefixes
    /// that have no state at all (a build that crashed at its first step).
    ///
    /// ``build(prefix:r1:r2:options:persistent:)`` calls this first. Persistent labs and labs of
    /// live processes are left alone.
    /// - Returns: the prefixes of the labs removed.
    @discardableResult
    public static func cleanUpStale() -> [String] {
        var removed: [String] = []
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: LabState.root)) ?? []
        for prefix in entries.sorted() {
            if let state = try? LabState.load(prefix: prefix) {
                if state.isStale {
                    tearDown(prefix: prefix)
                    removed.append(prefix)
                }
            } else if !exists(prefix: prefix), isOlderThanAMinute(LabState.directory(prefix: prefix)) {
                // A directory without a readable state and without namespaces: debris.
                try? FileManager.default.removeItem(atPath: LabState.directory(prefix: prefix))
            }
        }
        let stateless = Set(namespaceNames().compactMap(generatedPrefix(ofNamespace:)))
            .filter { !FileManager.default.fileExists(atPath: LabState.directory(prefix: $0)) }
        for prefix in stateless.sorted() {
            tearDown(prefix: prefix)
            removed.append(prefix)
        }
        return removed
    }

    /// Removes a lab by prefix, whoever owns it: ends every process in its namespaces, deletes
    /// the namespaces (and with them every link) and its state directory. Safe to call when
    /// nothing of the lab exists.
    /// - Returns: the namespaces that were deleted.
    @discardableResult
    public static func tearDown(prefix: String) -> [String] {
        guard let ip = try? SystemCommand.locate("ip") else { return [] }
        let present = Set(namespaceNames())
        let namespaces = LabHost.allCases.map { prefix + $0.rawValue }.filter(present.contains)
        // `ip netns del` does not end processes, and a namespace lives on while a process is in
        // it: kill them first.
        var processes: [ProcessIdentity] = []
        for namespace in namespaces {
            let pids = (try? SystemCommand.execute(ip, ["netns", "pids", namespace], timeout: 10))?.stdout ?? ""
            processes += pids.split(whereSeparator: \.isNewline).compactMap { Int32($0).flatMap(ProcessIdentity.init(pid:)) }
        }
        for process in processes { process.signal(SIGKILL) }
        for process in processes { process.waitForExit(seconds: 5) }
        if !namespaces.isEmpty {
            let batch = namespaces.map { "netns del \($0)" }.joined(separator: "\n") + "\n"
            _ = try? SystemCommand.execute(ip, ["-force", "-batch", "-"], input: batch, timeout: 30)
        }
        try? FileManager.default.removeItem(atPath: LabState.directory(prefix: prefix))
        return namespaces
    }

    /// Tears this lab down: see ``tearDown(prefix:)``. Idempotent; call it in a `defer`.
    public func tearDown() {
        Self.tearDown(prefix: prefix)
    }

    // MARK: - Namespaces and processes

    /// The name of a host's network namespace (for `ip netns exec NAME ...`).
    public func namespace(_ host: LabHost) -> String { prefix + host.rawValue }

    /// Starts a program in a host's namespace (`ip netns exec NS PROGRAM ARGS...`); the program
    /// is looked up in `PATH`.
    /// - Parameters:
    ///   - host: where the program runs.
    ///   - arguments: the program and its arguments.
    /// - Returns: the running program; read its output with
    ///   ``LabProcess/waitForLine(matching:timeout:)``.
    /// - Throws: ``LabError/Code/labNotFound`` if the lab is gone, or
    ///   ``LabError/Code/commandFailed`` if the program cannot start.
    public func spawn(_ host: LabHost, _ arguments: [String]) throws -> LabProcess {
        try requireNamespace(host)
        return try LabProcess(host: host, namespace: namespace(host), arguments: arguments)
    }

    /// Runs a program in a host's namespace to completion and returns what it printed, whatever
    /// its exit status.
    /// - Throws: ``LabError/Code/timedOut`` (after stopping it) if it runs longer than `timeout`.
    public func run(_ host: LabHost, _ arguments: [String], timeout: Duration = .seconds(30)) throws -> LabOutput {
        let process = try spawn(host, arguments)
        do {
            try process.waitForExit(timeout: timeout)
        } catch {
            process.stop(grace: .milliseconds(200))
            let stderr = process.errorOutput.trimmingCharacters(in: .whitespacesAndNewlines)
            throw LabError(.timedOut, "`\(arguments.joined(separator: " "))` in \(host) did not finish in \(timeout)\(stderr.isEmpty ? "" : "; stderr: \(stderr.suffix(1500))")")
        }
        return process.collectOutput()
    }

    /// The PIDs of every process in a host's namespace.
    public func processes(in host: LabHost) throws -> [Int32] {
        try SystemCommand.run("ip", ["netns", "pids", namespace(host)])
            .split(whereSeparator: \.isNewline).compactMap { Int32($0) }
    }

    // MARK: - Routers

    /// A router's current NAT behaviour and options.
    public func configuration(of router: LabRouter) -> RouterConfiguration {
        state.withLock { $0.routers[router.rawValue] } ?? RouterConfiguration(mode: .portRestricted)
    }

    /// Changes a router's NAT behaviour and options, and forgets its current mappings
    /// (`conntrack -F`), so the new behaviour applies to every flow from now on.
    ///
    /// Every option is set: an option left at its default turns that feature off (a delay set
    /// before ends, for instance).
    /// - Throws: ``LabError/Code/invalidArgument`` for options out of range,
    ///   ``LabError/Code/commandFailed`` if a rule does not load, ``LabError/Code/serviceFailed``
    ///   if the delay program does not start.
    public func setMode(_ router: LabRouter, _ mode: NATMode, options: NATOptions = NATOptions()) throws {
        try options.validate()
        try requireNamespace(router.host)
        try apply(router, RouterConfiguration(mode: mode, options: options))
    }

    /// Forgets every mapping a router holds (`conntrack -F` in its namespace).
    public func flushMappings(_ router: LabRouter) throws {
        try SystemCommand.run("conntrack", ["-F"], in: namespace(router.host))
    }

    func apply(_ router: LabRouter, _ configuration: RouterConfiguration) throws {
        let ns = namespace(router.host)
        let upnp = state.withLock { $0.upnpRouters.contains(router.rawValue) }
        let ruleset = RouterRuleset(router: router, mode: configuration.mode, options: configuration.options, upnp: upnp)
        try SystemCommand.run("sysctl", ["-q", "-w"] + ruleset.timeoutSysctls, in: ns)
        // The delay program (and its iptables rules, in a table of their own) stays if the delay
        // does not change; restarting it would cost a Python start for nothing.
        let previous = self.configuration(of: router).options
        let keepDelay = isDelayRunning(router)
            && previous.delayMilliseconds == configuration.options.delayMilliseconds
            && previous.jitterMilliseconds == configuration.options.jitterMilliseconds
            && configuration.options.delaysPackets
        if !keepDelay { try stopDelay(router) }
        try SystemCommand.run("nft", ["-f", "-"], in: ns, input: ruleset.text)
        if configuration.options.delaysPackets && !keepDelay {
            try startDelay(router, configuration.options)
        }
        try SystemCommand.run("conntrack", ["-F"], in: ns)
        try state.withLock { state in
            state.routers[router.rawValue] = configuration
            try state.save()
        }
    }

    /// Reloads a router's rules without touching its mappings (after miniupnpd was started).
    func reloadRules(_ router: LabRouter) throws {
        let configuration = configuration(of: router)
        let upnp = state.withLock { $0.upnpRouters.contains(router.rawValue) }
        let ruleset = RouterRuleset(router: router, mode: configuration.mode, options: configuration.options, upnp: upnp)
        try SystemCommand.run("nft", ["-f", "-"], in: namespace(router.host), input: ruleset.text)
    }

    // MARK: - Topology

    private func createTopology() throws {
        let inet = namespace(.inet)
        try SystemCommand.run("ip", ["-batch", "-"], input: LabHost.allCases.map { "netns add \(namespace($0))" }.joined(separator: "\n") + "\n")
        for host in LabHost.allCases {
            // IPv6 off: no router solicitations or DAD chatter in measurements. The bridge
            // sysctl: hairpinned packets must be routed by the router, not bridged past its NAT.
            try SystemCommand.run(
                "sysctl",
                ["-q", "-e", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1", "net.bridge.bridge-nf-call-iptables=0"],
                in: namespace(host))
        }
        // Veths are created straight into their namespaces, so nothing ever lands in the root one.
        var commands: [(LabHost, [String])] = [
            (.inet, ["link set lo up", "link add br0 type bridge", "link set br0 up"]),
            (.srv, [
                "link set lo up",
                "link add eth0 type veth peer name srv netns \(inet)",
                "addr add \(LabAddress.server)/\(LabAddress.internetPrefixLength) dev eth0",
                "addr add \(LabAddress.alternateServer)/\(LabAddress.internetPrefixLength) dev eth0",
                "link set eth0 up",
            ]),
        ]
        for router in LabRouter.allCases {
            commands.append((router.host, [
                "link set lo up",
                "link add wan type veth peer name \(router.rawValue) netns \(inet)",
                "addr add \(router.wanAddress)/\(LabAddress.internetPrefixLength) dev wan",
                "link set wan up",
                "link add lan type bridge",
                "addr add \(router.lanAddress)/24 dev lan",
                "link set lan up",
            ]))
            for host in router.hosts {
                commands.append((host, [
                    "link set lo up",
                    "link add eth0 type veth peer name \(host.rawValue) netns \(namespace(router.host))",
                    "addr add \(host.addresses[0])/24 dev eth0",
                    "link set eth0 up",
                    "route add default via \(router.lanAddress)",
                ]))
            }
            commands.append((router.host, router.hosts.flatMap { ["link set \($0.rawValue) master lan", "link set \($0.rawValue) up"] }))
        }
        commands.append((.inet, ["srv", "r1", "r2"].flatMap { ["link set \($0) master br0", "link set \($0) up"] }))
        for (host, lines) in commands {
            try SystemCommand.run("ip", ["-n", namespace(host), "-batch", "-"], input: lines.joined(separator: "\n") + "\n")
        }
        for router in LabRouter.allCases {
            try SystemCommand.run(
                "sysctl",
                ["-q", "-w", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.default.send_redirects=0", "net.ipv4.conf.lan.send_redirects=0"],
                in: namespace(router.host))
        }
    }

    // MARK: - Helpers

    func requireNamespace(_ host: LabHost) throws {
        guard FileManager.default.fileExists(atPath: "/run/netns/\(namespace(host))") else {
            throw LabError(.labNotFound, "the lab with prefix \(prefix) has no namespace \(namespace(host)); it was torn down or never built")
        }
    }

    var directory: String { LabState.directory(prefix: prefix) }

    func updateState(_ body: (inout LabState) -> Void) throws {
        try state.withLock { state in
            body(&state)
            try state.save()
        }
    }

    func currentState() -> LabState { state.withLock { $0 } }

    /// The names of every network namespace (`ip netns list` reads the same directory).
    static func namespaceNames() -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
    }

    private static let lowercaseAlphanumerics = Set("abcdefghijklmnopqrstuvwxyz0123456789")

    private static func generatedPrefix() -> String {
        "pl-" + String((0..<8).map { _ in lowercaseAlphanumerics.randomElement()! }) + "-"
    }

    /// The generated prefix of a namespace name such as `pl-k3x9q2ab-h1`, or `nil`.
    private static func generatedPrefix(ofNamespace name: String) -> String? {
        for host in LabHost.allCases where name.hasSuffix("-" + host.rawValue) {
            let prefix = String(name.dropLast(host.rawValue.count))
            let middle = prefix.dropFirst(3).dropLast()
            if prefix.hasPrefix("pl-"), middle.count == 8, middle.allSatisfy(lowercaseAlphanumerics.contains) {
                return prefix
            }
        }
        return nil
    }

    private static func validated(_ prefix: String) throws -> String {
        let allowed = lowercaseAlphanumerics.union("._-")
        guard (1...32).contains(prefix.count), prefix.allSatisfy(allowed.contains),
              let first = prefix.first, lowercaseAlphanumerics.contains(first)
        else {
            throw LabError(.invalidArgument, "a lab prefix is 1-32 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit; \"\(prefix)\" is not")
        }
        return prefix
    }

    private static func isOlderThanAMinute(_ path: String) -> Bool {
        guard let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date else { return true }
        return modified.timeIntervalSinceNow < -60
    }
}

/// The nftables rules of one lab router for a ``NATMode`` and ``NATOptions``, as one `nft -f`
/// transaction that replaces the previous rules atomically.
///
/// Two tables: `ip punchlab` (NAT, mapping table, unsolicited-input drop) and
/// `netdev punchlab_loss` (random loss on `wan`, only when asked for). How each mode is built,
/// and why the drop rules are essential, is in natlab-notes.md.
struct RouterRuleset {
    var router: LabRouter
    var mode: NATMode
    var options: NATOptions
    /// Whether miniupnpd runs in the router: its STUN self-test needs answers from the other
    /// address to reach its socket.
    var upnp: Bool

    /// Kernel defaults for the conntrack timeouts the options override.
    static let defaultUDPTimeout = 30
    static let defaultUDPStreamTimeout = 120
    static let defaultTCPTimeout = 432_000

    /// The sysctls that set the mapping timeouts in the router's namespace.
    var timeoutSysctls: [String] {
        [
            "net.netfilter.nf_conntrack_udp_timeout=\(options.udpTimeout ?? Self.defaultUDPTimeout)",
            "net.netfilter.nf_conntrack_udp_timeout_stream=\(options.udpTimeout ?? Self.defaultUDPStreamTimeout)",
            "net.netfilter.nf_conntrack_tcp_timeout_established=\(options.tcpTimeout ?? Self.defaultTCPTimeout)",
        ]
    }

    /// The `nft -f` input.
    var text: String {
        // "table X" then "delete table X" makes the deletion succeed whether or not X existed,
        // and the whole file is one transaction: no packet sees a router without rules.
        var lines = [
            "table ip punchlab",
            "delete table ip punchlab",
            "table netdev punchlab_loss",
            "delete table netdev punchlab_loss",
            "table ip punchlab {",
        ]
        lines += mappingTables.map { "  " + $0 }
        lines += chain("prerouting", "type nat hook prerouting priority dstnat; policy accept;", prerouting)
        lines += chain("postrouting", "type nat hook postrouting priority srcnat; policy accept;", postrouting)
        // After masquerade has chosen the public port (srcnat + 10), remember which inside
        // endpoint owns it. Refreshed by every outgoing packet, so an active flow keeps it.
        lines += chain("record", "type filter hook postrouting priority srcnat + 10; policy accept;", record)
        lines += chain("input", "type filter hook input priority filter; policy accept;", input)
        lines += chain("forward", "type filter hook forward priority filter; policy accept;", forward)
        lines.append("}")
        if options.lossPercent > 0 {
            let drop = "meta protocol ip numgen random mod 100 < \(options.lossPercent) drop"
            lines.append("table netdev punchlab_loss {")
            lines += chain("ingress", #"type filter hook ingress device "wan" priority 0; policy accept;"#, [drop])
            lines += chain("egress", #"type filter hook egress device "wan" priority 0; policy accept;"#, [drop])
            lines.append("}")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private var udpMapTimeout: Int { options.udpTimeout ?? Self.defaultUDPStreamTimeout }
    private var tcpMapTimeout: Int { options.tcpTimeout ?? 7200 }

    /// `eim`: public (protocol . port) -> inside (address . port), for full cone and hairpin.
    /// `eim_by_remote`: the same keyed also by the remote address, for address-restricted cone.
    /// Both assume one inside host per public port.
    private var mappingTables: [String] {
        [
            "map eim {",
            "  typeof meta l4proto . th dport : ip daddr . th dport",
            "  flags dynamic, timeout",
            "  size 65535",
            "}",
            "map eim_by_remote {",
            "  typeof ip saddr . meta l4proto . th dport : ip daddr . th dport",
            "  flags dynamic, timeout",
            "  size 65535",
            "}",
        ]
    }

    private var prerouting: [String] {
        var rules: [String] = []
        switch mode {
        case .fullCone:
            rules.append(#"iifname "wan" meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @eim"#)
        case .addressRestricted:
            rules.append(#"iifname "wan" meta l4proto { tcp, udp } dnat ip to ip saddr . meta l4proto . th dport map @eim_by_remote"#)
        case .portRestricted, .symmetric, .portRemap:
            break  // conntrack alone lets in only answers to what went out
        }
        if options.hairpin {
            rules.append(#"iifname "lan" ip daddr \#(router.wanAddress) meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @eim"#)
        }
        return rules
    }

    private var postrouting: [String] {
        let masquerade =
            switch mode {
            case .portRestricted, .fullCone, .addressRestricted: "masquerade"
            case .symmetric: "masquerade random"
            case .portRemap: "meta l4proto { tcp, udp } masquerade to :20000-29999"
            }
        var rules = [#"oifname "wan" \#(masquerade)"#]
        if mode == .portRemap {
            rules.append(#"oifname "wan" masquerade"#)  // ICMP and other protocols without ports
        }
        if options.hairpin {
            // A hairpinned flow goes out on the LAN it came from; its source must become the
            // public address, or the answer would skip the router.
            rules.append(#"iifname "lan" oifname "lan" ct status dnat snat ip to \#(router.wanAddress)"#)
        }
        return rules
    }

    private var record: [String] {
        let inside = "ct original ip saddr . ct original proto-src"
        return [
            #"oifname "wan" ct direction original meta l4proto udp update @eim { meta l4proto . th sport timeout \#(udpMapTimeout)s : \#(inside) }"#,
            #"oifname "wan" ct direction original meta l4proto tcp update @eim { meta l4proto . th sport timeout \#(tcpMapTimeout)s : \#(inside) }"#,
            #"oifname "wan" ct direction original meta l4proto udp update @eim_by_remote { ip daddr . meta l4proto . th sport timeout \#(udpMapTimeout)s : \#(inside) }"#,
            #"oifname "wan" ct direction original meta l4proto tcp update @eim_by_remote { ip daddr . meta l4proto . th sport timeout \#(tcpMapTimeout)s : \#(inside) }"#,
        ]
    }

    private var input: [String] {
        guard options.dropUnsolicited else { return [] }
        var rules = [#"iifname "wan" ct state established,related accept"#]
        if upnp {
            rules.append(#"iifname "wan" meta l4proto udp socket transparent 0 accept"#)
        }
        rules.append(#"iifname "wan" drop"#)
        return rules
    }

    private var forward: [String] {
        guard options.dropUnsolicited else { return [] }
        return [
            #"iifname "wan" ct state established,related accept"#,
            // Inbound flows a DNAT rule let in on purpose: full/address-restricted cone, UPnP.
            #"iifname "wan" ct status dnat accept"#,
            #"iifname "wan" drop"#,
        ]
    }

    private func chain(_ name: String, _ header: String, _ rules: [String]) -> [String] {
        ["  chain \(name) {", "    \(header)"] + rules.map { "    " + $0 } + ["  }"]
    }
}

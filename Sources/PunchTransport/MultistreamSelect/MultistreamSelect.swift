import NIOCore
import PunchWire

extension TransportError.Code {
    /// The peer did not start with the multistream-select 1.0 header.
    public static let multistreamBadHeader = Self("multistream.badHeader")
    /// A negotiation message that is not a varint-prefixed, newline-terminated UTF-8 line, or too long.
    public static let multistreamMalformed = Self("multistream.malformed")
    /// The peer supports none of the protocols proposed.
    public static let multistreamNoProtocol = Self("multistream.noProtocol")
    /// The peer answered with something other than our proposal or `na`, or proposed too often.
    public static let multistreamUnexpected = Self("multistream.unexpected")
    /// Negotiation did not finish in time.
    public static let multistreamTimeout = Self("multistream.timeout")
}

/// Negotiates one protocol with multistream-select 1.0 (`/multistream/1.0.0`) as a value-type
/// state machine: bytes in, actions out. ``MultistreamSelectHandler`` performs its actions.
///
/// Every message is a varint length, then UTF-8 text ending in `\n` (the newline counts in the
/// length); both sides first send the header `/multistream/1.0.0`. The dialer proposes protocols
/// one at a time; the listener echoes a proposal it supports or answers `na`
/// (multiformats/multistream-select README, "Protocol"). The dialer sends its header and first
/// proposal at once, which every libp2p implementation accepts and which saves a round trip.
public struct MultistreamSelectStateMachine: Sendable {
    /// The protocol id of multistream-select 1.0.
    public static let header = "/multistream/1.0.0"

    /// Limits on a negotiation.
    public struct Configuration: Sendable {
        /// The longest message accepted, newline included. Protocol ids are short (about 40 bytes);
        /// go-libp2p caps a message at 1024.
        public var maximumMessageLength = 1024
        /// How many proposals a listener answers before giving up on a dialer, so a peer cannot
        /// keep a connection busy with `na`s.
        public var maximumProposals = 16

        /// The defaults described on each field.
        public init() {}
    }

    /// What the caller must do after an input.
    public enum Action: Equatable, Sendable {
        /// Write these bytes to the peer.
        case send(ByteBuffer)
        /// Negotiation is done: write these bytes (may be empty), then hand the connection to
        /// `protocol`. Bytes received after the final message are in ``leftover``.
        case selected(protocol: String, send: ByteBuffer)
        /// Nothing to do until more bytes arrive.
        case wait
    }

    private enum State: Sendable {
        case dialerAwaitingHeader(remaining: ArraySlice<String>)
        case dialerAwaitingAnswer(proposed: String, remaining: ArraySlice<String>)
        case listenerAwaitingHeader
        case listenerAwaitingProposal(answered: Int)
        case done
    }

    private var state: State
    private let supported: Set<String>
    private let configuration: Configuration
    private var received = ByteBuffer()

    /// A dialer that proposes `protocols` in order of preference.
    ///
    /// - Precondition: `protocols` is not empty.
    public static func dialer(proposing protocols: [String], configuration: Configuration = .init()) -> (Self, Action) {
        precondition(!protocols.isEmpty, "a dialer must propose at least one protocol")
        var machine = Self(state: .done, supported: [], configuration: configuration)
        var out = ByteBuffer()
        Self.writeMessage(Self.header, into: &out)
        Self.writeMessage(protocols[0], into: &out)
        machine.state = .dialerAwaitingHeader(remaining: protocols[...])
        return (machine, .send(out))
    }

    /// A listener that accepts any of `supported`.
    public static func listener(supporting supported: Set<String>, configuration: Configuration = .init()) -> (Self, Action) {
        var machine = Self(state: .listenerAwaitingHeader, supported: supported, configuration: configuration)
        machine.state = .listenerAwaitingHeader
        var out = ByteBuffer()
        Self.writeMessage(Self.header, into: &out)
        return (machine, .send(out))
    }

    private init(state: State, supported: Set<String>, configuration: Configuration) {
        self.state = state
        self.supported = supported
        self.configuration = configuration
    }

    /// Bytes received after negotiation completed; they belong to the selected protocol.
    public var leftover: ByteBuffer { received }

    /// Feeds bytes from the peer.
    ///
    /// - Returns: what to do next.
    /// - Throws: ``TransportError`` with a `multistream…` code; the connection should be closed.
    public mutating func receive(_ bytes: ByteBuffer) throws -> Action {
        var bytes = bytes
        received.writeBuffer(&bytes)
        var pending = ByteBuffer()
        while let line = try nextMessage() {
            switch try handle(line) {
            case .wait:
                continue
            case .send(var out):
                pending.writeBuffer(&out)
            case .selected(let chosen, var out):
                pending.writeBuffer(&out)
                return .selected(protocol: chosen, send: pending)
            }
        }
        return pending.readableBytes > 0 ? .send(pending) : .wait
    }

    private mutating func handle(_ line: String) throws -> Action {
        switch state {
        case .dialerAwaitingHeader(let remaining):
            guard line == Self.header else { throw Self.badHeader(line) }
            state = .dialerAwaitingAnswer(proposed: remaining.first!, remaining: remaining.dropFirst())
            return .wait

        case .dialerAwaitingAnswer(let proposed, let remaining):
            if line == proposed {
                state = .done
                return .selected(protocol: proposed, send: ByteBuffer())
            }
            guard line == "na" else {
                throw TransportError(.multistreamUnexpected, "proposed \(proposed), the peer answered '\(line.prefix(100))'")
            }
            guard let next = remaining.first else {
                throw TransportError(.multistreamNoProtocol, "the peer supports none of the proposed protocols (last: \(proposed))")
            }
            state = .dialerAwaitingAnswer(proposed: next, remaining: remaining.dropFirst())
            var out = ByteBuffer()
            Self.writeMessage(next, into: &out)
            return .send(out)

        case .listenerAwaitingHeader:
            guard line == Self.header else { throw Self.badHeader(line) }
            state = .listenerAwaitingProposal(answered: 0)
            return .wait

        case .listenerAwaitingProposal(let answered):
            if supported.contains(line) {
                state = .done
                var out = ByteBuffer()
                Self.writeMessage(line, into: &out)
                return .selected(protocol: line, send: out)
            }
            guard answered + 1 < configuration.maximumProposals else {
                throw TransportError(.multistreamUnexpected, "the peer proposed \(answered + 1) unsupported protocols; giving up")
            }
            state = .listenerAwaitingProposal(answered: answered + 1)
            // `ls` and unknown protocols both get `na`: Punch does not list its protocols to
            // strangers (the listing is optional in the spec).
            var out = ByteBuffer()
            Self.writeMessage("na", into: &out)
            return .send(out)

        case .done:
            preconditionFailure("negotiation messages after completion are left in `leftover`")
        }
    }

    /// The next whole message as text, without its newline, or nil when more bytes are needed or
    /// negotiation is done (the rest belongs to the selected protocol).
    private mutating func nextMessage() throws -> String? {
        if case .done = state { return nil }
        let maximum = configuration.maximumMessageLength
        // The first message must be the header, whose length is fixed: a peer that starts with
        // anything else (an HTTP request line, a TLS record) is refused from its length prefix,
        // instead of holding the connection until as many bytes as that prefix claims have
        // arrived, or until the negotiation times out. Over-long prefixes fail as malformed below.
        if isAwaitingHeader, let (length, _) = try? Varint.decode(prefixOf: received.readableBytesView),
            length <= UInt64(maximum), length != UInt64(Self.header.utf8.count + 1)
        {
            throw TransportError(
                .multistreamBadHeader, "expected \(Self.header), the peer's first message is \(length) bytes long")
        }
        let next: ByteBuffer?
        do {
            next = try received.readLengthPrefixedMessage(maximumLength: maximum)
        } catch {
            throw TransportError(.multistreamMalformed, "not a multistream-select message (\(error))")
        }
        guard var frame = next else { return nil }
        guard frame.readableBytes > 0, frame.getInteger(at: frame.writerIndex - 1, as: UInt8.self) == UInt8(ascii: "\n"),
            let text = frame.readString(length: frame.readableBytes - 1), !text.utf8.contains(UInt8(ascii: "\n"))
        else {
            throw TransportError(.multistreamMalformed, "a multistream-select message must be one line ending in a newline")
        }
        return text
    }

    private var isAwaitingHeader: Bool {
        switch state {
        case .dialerAwaitingHeader, .listenerAwaitingHeader: true
        case .dialerAwaitingAnswer, .listenerAwaitingProposal, .done: false
        }
    }

    private static func badHeader(_ line: String) -> TransportError {
        TransportError(.multistreamBadHeader, "expected \(header), the peer sent '\(line.prefix(100))'")
    }

    static func writeMessage(_ text: String, into buffer: inout ByteBuffer) {
        buffer.writeVarint(UInt64(text.utf8.count + 1))
        buffer.writeString(text)
        buffer.writeInteger(UInt8(ascii: "\n"))
    }
}

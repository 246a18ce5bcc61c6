import BitTorrent
import Logging
import NIOConcurrencyHelpers
import NodeConfig
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import Swarm
import Values
#if canImport(Glibc)
import Glibc
#endif

/// A peer learned by gossip, for the engine to dial.
public struct GossipDiscoveredPeer: Sendable, Hashable {
    public var infoHash: InfoHash
    public var host: String
    public var port: UInt16
    public var complete: Bool
}

/// The UDP runtime around `GossipMembership`: binds the gossip port, ticks the state machine,
/// checks size, scope, version and MAC before anything reaches it, carries out its directives,
/// and counts every datagram in `starling_gossip_messages_total{direction,result}`.
///
/// Usage by the engine:
/// ```
/// let gossip = GossipService(config: cfg, group: group, logger: logger)
/// try await gossip.start()
/// gossip.announce(torrents: [(infoHash, complete: false)], peerPort: 6881)
/// Task { for await p in gossip.discoveredPeers { engine.addCandidate(p.infoHash, p.host, p.port) } }
/// let now = gossip.knownPeers(for: infoHash)
/// await gossip.stop()
/// ```
public final class GossipService: Service, Sendable {
    /// Result labels of `gossip_messages_total` (a fixed set, so cardinality stays bounded).
    public enum Result: String, Sendable, CaseIterable {
        case accepted, badMAC = "bad_mac", badVersion = "bad_version", replayed, oversized
        case outOfScope = "out_of_scope", malformed, ignored
        /// Outgoing only.
        case sent, sendFailed = "send_failed"
    }

    public let config: GossipConfig
    /// Discovered (info-hash, peer) pairs as they are learned. Single consumer; finishes on `stop`.
    public let discoveredPeers: AsyncStream<GossipDiscoveredPeer>

    private let group: any EventLoopGroup
    private let logger: Logger
    private let peerSink: AsyncStream<GossipDiscoveredPeer>.Continuation
    private let state = NIOLockedValueBox(State())
    private let metrics: Metrics

    private struct State: Sendable {
        var membership: GossipMembership?
        var channel: (any Channel)?
        var timer: RepeatedTask?
        var key: GossipKey?
        var torrents: [GossipTorrent] = []
        var peerPort: UInt16 = 0
        var counts: [String: Int] = [:]
        var stopped = false
        /// Membership counters already exported, so each tick adds only the difference.
        var exported = GossipMembershipStats()
    }

    private struct Metrics: Sendable {
        let inbound: [Result: Prometheus.Counter]
        let outbound: [Result: Prometheus.Counter]
        let members: Prometheus.Gauge
        let entriesOutOfScope: Prometheus.Counter
        let entriesMalformed: Prometheus.Counter
        let verdictsMade: Prometheus.Counter
        let verdictsAccepted: Prometheus.Counter
        let rateLimited: Prometheus.Counter

        init() {
            let help = "Gossip datagrams by direction and result."
            var i: [Result: Prometheus.Counter] = [:]
            for r in [Result.accepted, .badMAC, .badVersion, .replayed, .oversized, .outOfScope, .malformed, .ignored] {
                i[r] = StarlingMetrics.counter("gossip_messages_total", help, [("direction", "in"), ("result", r.rawValue)])
            }
            var o: [Result: Prometheus.Counter] = [:]
            for r in [Result.sent, .sendFailed] {
                o[r] = StarlingMetrics.counter("gossip_messages_total", help, [("direction", "out"), ("result", r.rawValue)])
            }
            inbound = i
            outbound = o
            members = StarlingMetrics.gauge("gossip_members", "Gossip members currently known (alive or suspect).")
            let dropped = "Members in received gossip samples that were dropped, by reason."
            entriesOutOfScope = StarlingMetrics.counter("gossip_sample_entries_dropped_total", dropped, [("reason", "out_of_scope")])
            entriesMalformed = StarlingMetrics.counter("gossip_sample_entries_dropped_total", dropped, [("reason", "malformed")])
            let verdicts = "Gossip death verdicts: made after unanswered probes, or accepted from others."
            verdictsMade = StarlingMetrics.counter("gossip_death_verdicts_total", verdicts, [("source", "made")])
            verdictsAccepted = StarlingMetrics.counter("gossip_death_verdicts_total", verdicts, [("source", "accepted")])
            rateLimited = StarlingMetrics.counter("gossip_sends_rate_limited_total", "Gossip datagrams not sent (or delayed) by the send-rate cap.")
        }

        /// Adds what `now` counted beyond `before`.
        func export(_ now: GossipMembershipStats, since before: GossipMembershipStats) {
            func add(_ c: Prometheus.Counter, _ a: Int, _ b: Int) { if a > b { c.increment(by: Int64(a - b)) } }
            add(entriesOutOfScope, now.outOfScopeEntries, before.outOfScopeEntries)
            add(entriesMalformed, now.malformedEntries, before.malformedEntries)
            add(verdictsMade, now.verdictsMade, before.verdictsMade)
            add(verdictsAccepted, now.verdictsAccepted, before.verdictsAccepted)
            add(rateLimited, now.rateLimited, before.rateLimited)
        }
    }

    public init(config: GossipConfig, group: any EventLoopGroup, logger: Logger) {
        self.config = config
        self.group = group
        self.logger = logger
        (discoveredPeers, peerSink) = AsyncStream.makeStream(of: GossipDiscoveredPeer.self,
                                                             bufferingPolicy: .bufferingNewest(4096))
        metrics = Metrics()
    }

    /// The bound gossip endpoint (its port is the real one when `config.port` was 0); nil before `start`.
    public var localEndpoint: IPEndpoint? { state.withLockedValue { $0.membership?.gossipEndpoint } }

    /// Gossips until graceful shutdown, then says goodbye.
    public func run() async throws {
        do {
            try await start()
        } catch {
            await stop()
            throw SettingError(.gossip, "cannot start on \(config.bindIP) port \(config.port): \(error)")
        }
        try? await gracefulShutdown()
        await stop()
    }

    /// Binds and starts gossiping. Throws `GossipConfigError.noKey` without a key unless insecure.
    public func start() async throws {
        guard state.withLockedValue({ $0.channel == nil && !$0.stopped }) else { return } // started or stopped already
        try config.validate()
        let key = try config.effectiveKey()
        if config.key == nil {
            logger.warning("gossip running without a key (--gossip-insecure): anyone on the subnet can forge members")
        }
        let bindHost = config.broadcast ? "0.0.0.0" : config.bindIP.description
        let channel = try await DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_broadcast), value: config.broadcast ? 1 : 0)
            // Datagrams past 1400 bytes are refused anyway; 2 KiB lets us see (and count) that they were too big.
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 2048))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(GossipInboundHandler(service: self))
                }
            }
            .bind(host: bindHost, port: Int(config.port))
            .get()
        let port = UInt16(channel.localAddress?.port ?? Int(config.port))
        let me = IPEndpoint(ip: config.bindIP, port: port)
        let id = UInt64.random(in: 1...UInt64.max)
        let now = Self.now()
        state.withLockedValue { s in
            var m = GossipMembership(id: id, gossipEndpoint: me, peerAddress: config.peerAddress, scope: config.subnet,
                                     seeds: config.seeds, broadcast: config.broadcast, settings: config.membership,
                                     rng: SplitMix64(seed: .random(in: 0 ... .max)), now: now)
            m.announce(torrents: s.torrents, peerPort: s.peerPort)
            s.membership = m
            s.channel = channel
            s.key = key
        }
        let interval = TimeAmount.milliseconds(max(10, config.tickIntervalMillis))
        let timer = channel.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: interval) { [self] _ in tick() }
        state.withLockedValue { $0.timer = timer }
        logger.info("gossip on", metadata: ["endpoint": "\(me)", "subnet": "\(config.subnet)",
                                                   "id": "\(String(id, radix: 16))", "seeds": "\(config.seeds.count)"])
    }

    /// Tells members we leave, then closes the socket and finishes `discoveredPeers`.
    public func stop() async {
        let (channel, timer, directives, key): ((any Channel)?, RepeatedTask?, [GossipDirective], GossipKey?) = state.withLockedValue { s in
            guard !s.stopped else { return (nil, nil, [], nil) }
            s.stopped = true
            let ds = s.membership?.leave(now: Self.now()) ?? []
            let c = s.channel
            s.channel = nil
            return (c, s.timer, ds, s.key)
        }
        timer?.cancel()
        if let channel, let key {
            let writes = perform(directives, on: channel, key: key)
            _ = try? await EventLoopFuture.andAllComplete(writes, on: channel.eventLoop).get()
            try? await channel.close()
        }
        peerSink.finish()
    }

    /// Replaces what we serve (at most 32 torrents are announced) and our peer-wire port.
    public func announce(torrents: [(InfoHash, complete: Bool)], peerPort: UInt16) {
        let list = torrents.map { GossipTorrent(infoHash: $0.0, complete: $0.complete) }
        state.withLockedValue { s in
            s.torrents = list
            s.peerPort = peerPort
            s.membership?.announce(torrents: list, peerPort: peerPort)
        }
    }

    /// Peers (alive or suspect members) serving `infoHash`, as dialable host strings.
    public func knownPeers(for infoHash: InfoHash) -> [(host: String, port: UInt16)] {
        let peers = state.withLockedValue { $0.membership?.peers(for: infoHash) ?? [] }
        return peers.map { (host: $0.address.description, port: $0.port) }
    }

    /// Same as `knownPeers`, with completeness (seeders first is the engine's call).
    public func knownPeerDetails(for infoHash: InfoHash) -> [GossipPeer] {
        state.withLockedValue { $0.membership?.peers(for: infoHash) ?? [] }
    }

    /// Current members, sorted by id.
    public func members() -> [GossipMember] { state.withLockedValue { $0.membership?.members ?? [] } }

    /// This instance's own counts, keyed `direction/result` (the Prometheus family is process-wide).
    public func counts() -> [String: Int] { state.withLockedValue { $0.counts } }

    public func membershipStats() -> GossipMembershipStats? { state.withLockedValue { $0.membership?.stats } }

    // MARK: Runtime

    private func tick() {
        let (directives, channel, key, members, stats, before) = state.withLockedValue { s in
            guard !s.stopped, s.membership != nil else {
                return ([GossipDirective](), (any Channel)?.none, GossipKey?.none, 0, GossipMembershipStats(), GossipMembershipStats())
            }
            let ds = s.membership!.tick(now: Self.now())
            let before = s.exported
            s.exported = s.membership!.stats
            return (ds, s.channel, s.key, s.membership!.memberCount, s.exported, before)
        }
        metrics.members.set(to: Double(members))
        metrics.export(stats, since: before)
        if let channel, let key { _ = perform(directives, on: channel, key: key) }
    }

    /// Judges one datagram: size, scope, version, MAC, parse, then the state machine.
    fileprivate func received(_ bytes: [UInt8], from address: SocketAddress, on channel: any Channel) {
        guard bytes.count <= GossipMessage.maxDatagramSize else { return count(.oversized) }
        guard let text = address.ipAddress, let ip = IPAddress(text), let p = address.port,
              let port = UInt16(exactly: p) else { return count(.malformed) }
        let source = IPEndpoint(ip: ip, port: port)
        // Scope first: out-of-subnet senders cost no HMAC.
        guard config.subnet.contains(ip) else { return count(.outOfScope) }
        guard let key = state.withLockedValue({ $0.key }) else { return }
        let message: GossipMessage
        do {
            message = try GossipCodec.open(bytes, key: key)
        } catch {
            switch error {
            case .oversized: return count(.oversized)
            case .badVersion: return count(.badVersion)
            case .badMAC: return count(.badMAC)
            default: return count(.malformed)
            }
        }
        let outcome: GossipReceiveOutcome? = state.withLockedValue { s in
            guard !s.stopped else { return nil }
            return s.membership?.receive(message, from: source, now: Self.now())
        }
        guard let outcome else { return }
        switch outcome.result {
        case .accepted: count(.accepted)
        case .replayed, .stale: count(.replayed)
        case .outOfScope: count(.outOfScope)
        case .fromSelf: count(.ignored)
        }
        if outcome.result == .outOfScope || outcome.result == .replayed {
            logger.debug("gossip datagram dropped", metadata: ["result": "\(outcome.result.rawValue)", "from": "\(source)"])
        }
        _ = perform(outcome.directives, on: channel, key: key)
    }

    @discardableResult
    private func perform(_ directives: [GossipDirective], on channel: any Channel, key: GossipKey) -> [EventLoopFuture<Void>] {
        var writes: [EventLoopFuture<Void>] = []
        for d in directives {
            switch d {
            case .send(let m, let to):
                writes.append(write(m, to: to, on: channel, key: key))
            case .broadcast(let m):
                if let b = config.subnet.ipv4Broadcast {
                    writes.append(write(m, to: IPEndpoint(ip: b, port: config.port), on: channel, key: key))
                }
            case .peerDiscovered(let ih, let p):
                peerSink.yield(GossipDiscoveredPeer(infoHash: ih, host: p.address.description, port: p.port, complete: p.complete))
            case .memberAdded(let m):
                logger.debug("gossip member added", metadata: ["member": "\(m.gossipEndpoint)"])
            case .memberRemoved(let m):
                logger.debug("gossip member removed", metadata: ["member": "\(m.gossipEndpoint)"])
            case .memberUpdated:
                break
            }
        }
        return writes
    }

    private func write(_ m: GossipMessage, to: IPEndpoint, on channel: any Channel, key: GossipKey) -> EventLoopFuture<Void> {
        guard let address = try? SocketAddress(ipAddress: to.ip.description, port: Int(to.port)) else {
            count(.sendFailed, out: true)
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        let wire = GossipCodec.seal(m, key: key)
        let envelope = AddressedEnvelope(remoteAddress: address, data: channel.allocator.buffer(bytes: wire))
        let future = channel.writeAndFlush(envelope)
        return future.always { [self] result in
            switch result {
            case .success: count(.sent, out: true)
            case .failure(let e):
                count(.sendFailed, out: true)
                logger.debug("gossip send failed", metadata: ["to": "\(to)", "error": "\(e)"])
            }
        }.flatMapErrorThrowing { _ in }
    }

    private func count(_ r: Result, out: Bool = false) {
        (out ? metrics.outbound[r] : metrics.inbound[r])?.increment()
        let key = "\(out ? "out" : "in")/\(r.rawValue)"
        state.withLockedValue { $0.counts[key, default: 0] += 1 }
    }

    private static func now() -> GossipTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let wall = UInt64(max(0, ts.tv_sec)) * 1000 + UInt64(max(0, ts.tv_nsec)) / 1_000_000
        return GossipTime(monotonicNanos: NIODeadline.now().uptimeNanoseconds, unixMillis: wall)
    }
}

/// Hands each datagram to the service; no state of its own.
private final class GossipInboundHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let service: GossipService

    init(service: GossipService) { self.service = service }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        service.received(Array(envelope.data.readableBytesView), from: envelope.remoteAddress, on: context.channel)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A UDP socket reports ICMP unreachables as read errors: harmless for gossip, keep reading.
    }
}

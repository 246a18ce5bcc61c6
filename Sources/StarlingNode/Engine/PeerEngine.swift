import BitTorrent
import Foundation
import Logging
import NIOCore
import NIOPosix
import NodeConfig
import ServiceLifecycle
import Storage
import Swarm
import Values

/// The peer-wire runtime of one process: a listener on a port from the configured range,
/// a dialler, the host-wide rate limiter and the torrent sessions, all on one event loop.
/// A `Service`: it listens when run and closes every connection on graceful shutdown.
///
/// The concurrency rule of the whole runtime: state is confined to an event loop (this
/// engine's, for everything of the peer wire) or an actor (the node's controller, the
/// tracker announcer); callers off the loop get snapshots (`snapshot()`, `status(of:)`)
/// through async calls; what threads must share sits in a `NIOLockedValueBox`; only the NIO
/// shell is `@unchecked Sendable`, each type saying why (docs/design/runtime.md).
public final class PeerEngine: Service, NodeStatusSource, @unchecked Sendable {
    // Safe because every mutable member is touched only on `loop` (public methods hop there).
    public let config: EngineConfig
    let logger: Logger
    let loop: EventLoop
    public let limiter: HostRateLimiter
    private var server: Channel?
    /// What `setCongestionControl` sets: decided in `start()`, before any connection.
    private var congestion: String?
    public private(set) var listenPort: Int = 0
    private(set) var sessions: [InfoHash: TorrentSession] = [:]
    private var candidates: [InfoHash: DialSchedule] = [:]
    private var timers: [RepeatedTask] = []
    /// Outbound connections leave from the configured IP, so peers see the address we announce.
    private let bindAddress: SocketAddress
    /// Checks and writes arrived pieces off the event loop, so the loop keeps moving bytes
    /// meanwhile. (Internal, not private: a test holds it busy to play a slow disk.)
    let pieceWorker = NIOThreadPool(numberOfThreads: 1)
    /// Reads blocks to upload off the event loop (libtorrent's disk thread serves reads the
    /// same way), apart from the hashing so a big piece's check delays no upload.
    private let blockReader = NIOThreadPool(numberOfThreads: 1)

    private let listeningPromise: EventLoopPromise<Int>
    /// The port, once listening; failed if the engine never listens.
    public var listening: EventLoopFuture<Int> { listeningPromise.futureResult }

    public init(config: EngineConfig, loop: EventLoop, logger: Logger) throws {
        do {
            bindAddress = try SocketAddress(ipAddress: config.ip, port: 0)
        } catch {
            throw SettingError(.ip, "\(config.ip) is not an IP address")
        }
        self.config = config
        self.loop = loop
        listeningPromise = loop.makePromise()
        self.logger = logger
        limiter = HostRateLimiter(loop: loop, upRate: config.upRate, downRate: config.downRate, maxChange: config.maxChange)
        limiter.bytesLeft = { [weak self] in self?.sessions.values.reduce(0) { $0 + ($1.isComplete ? 0 : $1.left) } ?? 0 }
        limiter.uploadLeft = { [weak self] in self?.sessions.values.reduce(0) { $0 + $1.uploadShareLeft } ?? 0 }
        limiter.slewLimitChanged = { [weak self] on in
            guard let self else { return }
            for s in self.sessions.values { s.announceToHolders(on) }
        }
        pieceWorker.start()
        blockReader.start()
    }

    deinit {
        // Never started (the run failed before it): nobody waits, but the promise must end.
        listeningPromise.fail(ChannelError.ioOnClosedChannel)
    }

    // MARK: life

    public func run() async throws {
        try await start()
        try? await gracefulShutdown()
        await shutdown()
    }

    public var eventLoop: any EventLoop { loop }
    public var rateLimiter: HostRateLimiter? { limiter }

    /// Binds the first free port of the range (or a random one of it) and starts the timers.
    public func start() async throws {
        do {
            try await bind()
        } catch {
            listeningPromise.fail(error)
            throw error
        }
        listeningPromise.succeed(listenPort)
    }

    private func bind() async throws {
        let chosen = try chooseCongestionControl()
        try await loop.submit { self.congestion = chosen }.get()
        var ports = Array(config.portRange)
        if config.randomPort { ports.shuffle() }
        var lastError: Error?
        for port in ports {
            do {
                let ch = try await ServerBootstrap(group: loop)
                    .serverChannelOption(.backlog, value: 256)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .childChannelOption(.recvAllocator, value: Self.receiveBuffers)
                    .childChannelInitializer { [self] ch in
                        // Outside the allow-list: closed before a byte of the handshake is read.
                        if let host = ch.remoteAddress.flatMap(PeerAddress.init)?.host, !self.config.allows(host: host) {
                            self.logger.debug("refusing connection from outside the allowed networks", metadata: ["peer": "\(host)"])
                            return ch.eventLoop.makeFailedFuture(PeerRefused("\(host) is outside the allowed networks"))
                        }
                        return self.setCongestionControl(on: ch).flatMapThrowing { try self.configure(ch, dialledFor: nil) }
                    }
                    .bind(host: config.listenIP ?? config.ip, port: port).get()
                server = ch
                listenPort = port
                break
            } catch {
                lastError = error
            }
        }
        guard server != nil else {
            throw SettingError(.portRange, "no free port in \(PortRange.format(config.portRange)) on \(config.listenIP ?? config.ip)"
                + (lastError.map { " (last error: \($0))" } ?? "") + "; choose another range")
        }
        logger.info("listening", metadata: ["address": "\(PeerAddress(host: config.listenIP ?? config.ip, port: listenPort))"])
        try await loop.submit {
            self.timers.append(self.loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
                for s in self.sessions.values { s.tick() }
                self.dialCandidates()
            })
            self.timers.append(self.loop.scheduleRepeatedTask(initialDelay: .seconds(10), delay: .seconds(10)) { _ in
                for s in self.sessions.values { s.rechoke() }
            })
        }.get()
    }

    /// Closes the listener and every connection.
    public func shutdown() async {
        listeningPromise.fail(ChannelError.ioOnClosedChannel)
        try? await loop.submit {
            for t in self.timers { t.cancel() }
            self.limiter.stop()
            for s in self.sessions.values { s.closeAll() }
        }.get()
        try? await server?.close()
        try? await pieceWorker.shutdownGracefully()
        try? await blockReader.shutdownGracefully()
    }

    // MARK: torrents

    /// Opens a torrent's data (verifying what is on disk) and starts serving or fetching it.
    public func add(metainfo: Metainfo, path: String, mode: PieceStore.Mode) async throws -> TorrentSession {
        let store = try PieceStore(metainfo: metainfo, target: path, mode: mode)
        // A download that starts from nothing has nothing to verify (1 GiB of zeros costs ~0.5 s).
        let have = store.isFresh ? Bitfield(count: metainfo.pieceCount) : try store.verifyExisting()
        if mode == .seed && !have.isComplete {
            throw SettingError(nil, torrent: metainfo.name, "\(path) does not match the torrent: \(metainfo.pieceCount - have.setCount) of \(metainfo.pieceCount) pieces fail their hash")
        }
        if mode == .download && store.isFinal && !have.isComplete {
            // OUT exists (no .part beside it) but is not this torrent's data, e.g. an older version.
            throw SettingError(nil, torrent: metainfo.name, "\(path) already exists and does not match the torrent (\(metainfo.pieceCount - have.setCount) of \(metainfo.pieceCount) pieces fail their hash): remove it or choose another output path")
        }
        if mode == .download && have.setCount > 0 {
            logger.info("resuming", metadata: ["verified pieces": "\(have.setCount)/\(metainfo.pieceCount)"])
        }
        if mode == .download && have.isComplete && !store.isFinal {
            try store.finalize()
        }
        let session = TorrentSession(metainfo: metainfo, store: store, have: have, loop: loop,
                                     pieceWorker: pieceWorker, blockReader: blockReader, config: config, logger: logger)
        try await loop.submit {
            self.sessions[metainfo.infoHash] = session
            session.announceToHolders(self.limiter.maxChange != nil)
        }.get()
        return session
    }

    public func remove(_ infoHash: InfoHash) async {
        try? await loop.submit {
            self.sessions.removeValue(forKey: infoHash)?.closeAll()
            self.candidates[infoHash] = nil
        }.get()
    }

    /// A snapshot of the engine and its torrents.
    public func snapshot() async -> NodeStatus? {
        try? await loop.submit { self.status() }.get()
    }

    /// A snapshot of one torrent; nil when the engine does not serve it.
    public func status(of infoHash: InfoHash) async -> TorrentStatus? {
        (try? await loop.submit { self.sessions[infoHash]?.status() }.get()) ?? nil
    }

    public func session(_ infoHash: InfoHash) async -> TorrentSession? {
        try? await loop.submit { self.sessions[infoHash] }.get()
    }

    /// Peers learned from a tracker, gossip or the command line; dialled on the next tick.
    /// Past `maxCandidates` for the torrent, new addresses are dropped (known ones stay).
    public func addCandidates(_ addresses: [PeerAddress], for infoHash: InfoHash) {
        loop.execute {
            var known = self.candidates[infoHash] ?? DialSchedule(capacity: self.config.maxCandidates)
            let dropped = known.add(addresses.filter {
                !($0.host == self.config.ip && $0.port == self.listenPort) && self.config.allows(host: $0.host)
            })
            if dropped > 0 {
                self.logger.debug("candidate list full: addresses dropped", metadata: ["dropped": "\(dropped)", "kept": "\(known.count)"])
            }
            self.candidates[infoHash] = known
            if !self.config.sites.isEmpty {
                let mates = addresses.filter { self.config.sameSite($0.host) == true }.map(\.host)
                if !mates.isEmpty { self.sessions[infoHash]?.siteMembersKnown(mates) }
            }
            self.dialCandidates()
        }
    }

    /// How many addresses are kept to dial for `infoHash`.
    func candidateCount(for infoHash: InfoHash) async -> Int {
        (try? await loop.submit { self.candidates[infoHash]?.count ?? 0 }.get()) ?? 0
    }

    // MARK: connections

    private func configure(_ channel: Channel, dialledFor: InfoHash?) throws {
        let pieceCount = dialledFor.flatMap { sessions[$0]?.metainfo.pieceCount }
        try channel.pipeline.syncOperations.addHandlers([
            ThrottleHandler(limiter: limiter),
            IdleStateHandler(readTimeout: .minutes(3), writeTimeout: .seconds(90)),
            ByteToMessageHandler(PeerWireDecoder(pieceCount: pieceCount)),
            PeerWireHandler(engine: self, dialledFor: dialledFor),
        ])
    }

    private func dialCandidates() {
        let now = UInt64(loop.now.uptimeNanoseconds)
        for (hash, session) in sessions where session.failure == nil {
            guard var known = candidates[hash] else { continue }
            let connected = session.state.listenAddresses
            let budget = session.state.dialBudget(dialling: known.inProgress)
            let due = known.due(now: now, budget: budget) { connected.contains($0) || session.state.isBanned($0.host) }
            candidates[hash] = known
            for address in due { dial(address, for: hash) }
        }
    }

    /// The operator's algorithm, which must be usable, else the default where the kernel
    /// lets us set it (an unprivileged process may set only what
    /// `net.ipv4.tcp_allowed_congestion_control` lists), else nil: the host's.
    private func chooseCongestionControl() throws -> String? {
        if let name = config.tcpCongestion {
            if let refusal = Self.refusal(ofCongestion: name) {
                throw SettingError(.tcpCongestion, "\(name): the kernel refused it (\(refusal)); "
                    + "this host offers: \(Self.availableCongestionControls())")
            }
            return name
        }
        if let refusal = Self.refusal(ofCongestion: Defaults.tcpCongestion) {
            logger.warning("peer connections keep the host's TCP congestion control; list \(Defaults.tcpCongestion) in net.ipv4.tcp_allowed_congestion_control to let an unprivileged node use it",
                           metadata: ["wanted": "\(Defaults.tcpCongestion)", "refused": "\(refusal)"])
            return nil
        }
        return Defaults.tcpCongestion
    }

    /// Nil when the kernel sets `name` on a fresh TCP socket, else its error.
    static func refusal(ofCongestion name: String) -> String? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return String(cString: strerror(errno)) }
        defer { close(fd) }
        var value = CongestionName(name).bytes
        let rc = setsockopt(fd, Int32(IPPROTO_TCP), congestionOption, &value, socklen_t(MemoryLayout.size(ofValue: value)))
        return rc == 0 ? nil : String(cString: strerror(errno))
    }

    /// Sets the chosen algorithm on a socket (nothing to do when the host's is kept).
    func setCongestionControl(on channel: Channel) -> EventLoopFuture<Void> {
        guard let name = congestion else { return channel.eventLoop.makeSucceededVoidFuture() }
        guard let provider = channel as? SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(PeerRefused("this channel has no socket options"))
        }
        return provider.unsafeSetSocketOption(level: SocketOptionLevel(IPPROTO_TCP), name: Self.congestionOption,
                                              value: CongestionName(name).bytes)
    }

    /// Linux's TCP_CONGESTION (13 in linux/tcp.h).
    static let congestionOption = SocketOptionName(13)

    /// What `net.ipv4.tcp_available_congestion_control` lists, for error messages.
    static func availableCongestionControls() -> String {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/tcp_available_congestion_control", encoding: .utf8)) ?? ""
        let names = text.split(whereSeparator: \.isWhitespace)
        return names.isEmpty ? "(unknown)" : names.joined(separator: " ")
    }

    /// Linux's TCP_NOTSENT_LOWAT (25 in linux/tcp.h; NIO has no name for it).
    static let unsentLowWaterOption = ChannelOptions.Types.SocketOption(level: .tcp, name: .init(rawValue: 25))

    private func dial(_ address: PeerAddress, for infoHash: InfoHash) {
        ClientBootstrap(group: loop)
            .connectTimeout(.seconds(5))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.recvAllocator, value: Self.receiveBuffers)
            .channelInitializer { [self] ch in
                self.setCongestionControl(on: ch).flatMapThrowing { try self.configure(ch, dialledFor: infoHash) }
            }
            .bind(to: bindAddress)
            .connect(host: address.host, port: address.port)
            .whenComplete { result in
                self.candidates[infoHash]?.dialEnded(address, connected: (try? result.get()) != nil)
                if case .failure(let error) = result {
                    self.logger.debug("cannot connect", metadata: ["peer": "\(address)", "error": "\(error)"])
                }
            }
    }

    /// True when a session serves `infoHash`. On the loop.
    func hasTorrent(_ infoHash: InfoHash) -> Bool { sessions[infoHash] != nil }

    /// The session a handshake names, or nil to close the connection (an unknown torrent,
    /// or ourselves). The session's rules then admit or refuse the peer.
    func session(for handshake: Handshake, remote: PeerAddress) -> TorrentSession? {
        guard let session = sessions[handshake.infoHash] else {
            logger.debug("closing connection: unknown torrent", metadata: ["peer": "\(remote)"])
            return nil
        }
        guard handshake.peerID != config.peerID else {
            logger.debug("closing connection to self", metadata: ["peer": "\(remote)"])
            return nil
        }
        return session
    }

    /// Reads of up to 256 KiB (NIO's default stops at 64 KiB): a busy peer connection moves
    /// several MB/s, and each read is a syscall and a pass through the decoder.
    static let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 16 * 1024, maximum: 256 * 1024)

    /// A connection of `session` closed: the next dial of its address waits no longer than the first.
    func linkClosed(listenAddress: PeerAddress?, session: TorrentSession) {
        if let listenAddress { candidates[session.infoHash]?.connectionClosed(listenAddress) }
        dialCandidates()
    }
}

/// A congestion-control name as the kernel takes it: NUL-padded in 16 bytes (TCP_CA_NAME_MAX).
struct CongestionName {
    typealias Bytes = (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                       UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)
    let bytes: Bytes

    /// At most 15 characters (the kernel's limit, with the NUL); longer names are cut and refused.
    init(_ name: String) {
        var b: Bytes = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &b) { raw in
            for (i, c) in name.utf8.prefix(15).enumerated() { raw[i] = c }
        }
        bytes = b
    }

    /// The name back from a 16-byte option value (up to the first NUL).
    static func name(of bytes: Bytes) -> String {
        withUnsafeBytes(of: bytes) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
    }
}

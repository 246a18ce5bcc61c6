import BitTorrent
import Logging
import NIOCore
import Values
#if canImport(Glibc)
import Glibc
#endif

/// Progress for an operator: a bar redrawn in place on a terminal, otherwise a log line
/// every few seconds (for journald, Ansible and CI logs).
// @unchecked: its state (`task`, `done`) and the session it reads are touched on `loop` only.
final class ProgressReporter: @unchecked Sendable {
    private let session: TorrentSession
    private let loop: EventLoop
    private let interval: Int
    private let logger: Logger
    private let tty = isatty(STDERR_FILENO) == 1
    private var task: RepeatedTask?
    private var done = false

    init(session: TorrentSession, loop: EventLoop, interval: Int, logger: Logger) {
        self.session = session
        self.loop = loop
        self.interval = max(1, interval)
        self.logger = logger
    }

    func start() {
        let period = tty ? 1 : interval
        loop.execute {
            self.task = self.loop.scheduleRepeatedTask(initialDelay: .seconds(Int64(period)), delay: .seconds(Int64(period))) { _ in
                self.report()
            }
        }
    }

    func finish() {
        loop.execute {
            if self.tty && !self.done { self.report(); Console.writeError("\n") }
            self.done = true
        }
    }

    func stop() { loop.execute { self.task?.cancel() } }

    /// Rates are the session's own, smoothed once a second.
    private func report() {
        let downRate = session.state.downRate.rate
        let upRate = session.state.upRate.rate
        let pct = session.progress * 100
        let left = session.left
        let eta = Units.formatETA(bytesLeft: left, bytesPerSecond: downRate)
        if tty && !done {
            let width = 30
            let filled = Int(session.progress * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            let line = "\r[\(bar)] \(Units.format1(pct))%  \(Units.formatBytes(session.metainfo.totalLength - left))  "
                + "down \(Units.formatRate(downRate))  up \(Units.formatRate(upRate))  peers \(session.connectedPeers)  ETA \(eta)   "
            Console.writeError(line)
        } else if !tty {
            logger.info("progress", metadata: [
                "done": "\(Units.format1(pct))%", "down": "\(Units.formatRate(downRate))",
                "up": "\(Units.formatRate(upRate))", "peers": "\(session.connectedPeers)", "eta": "\(eta)",
            ])
        }
    }
}

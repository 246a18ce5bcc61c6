import BitTorrent
import Dispatch
#if canImport(Glibc)
import Glibc
import NIOConcurrencyHelpers
#endif

/// One `hashAllPieces`: piece buffers passed from the reader to the hashers (empty ones in
/// `empty`, filled ones in `filled`, FIFO; each side waits on a semaphore that counts what
/// the other side handed over), the digests as they are made, and the first failure. A
/// buffer is an array moved in and out, so only one thread holds it at a time.
final class HashJob: Sendable {
    private struct State {
        var empty: [[UInt8]]
        var filled: [(Int, [UInt8])] = []
        var filledHead = 0
        var digests: [UInt8]
        var failure: StorageError?
    }

    private let state: NIOLockedValueBox<State>
    private let emptyCount: DispatchSemaphore
    private let filledCount = DispatchSemaphore(value: 0)
    private let hashers: Int

    init(pieceCount: Int, buffers: Int, byteCount: Int, hashers: Int) {
        let all = (0..<buffers).map { _ in [UInt8](repeating: 0, count: byteCount) }
        state = NIOLockedValueBox(State(empty: all, digests: [UInt8](repeating: 0, count: pieceCount * 20)))
        emptyCount = DispatchSemaphore(value: buffers)
        self.hashers = hashers
    }

    /// Blocks until an empty buffer is free.
    func takeEmpty() -> [UInt8] {
        emptyCount.wait()
        return state.withLockedValue { $0.empty.removeLast() }
    }

    func giveBack(_ buffer: [UInt8]) {
        state.withLockedValue { $0.empty.append(buffer) }
        emptyCount.signal()
    }

    func putFilled(index: Int, _ buffer: [UInt8]) {
        state.withLockedValue { $0.filled.append((index, buffer)) }
        filledCount.signal()
    }

    /// Blocks until a filled buffer is ready; nil once the job is closed and drained.
    func takeFilled() -> (Int, [UInt8])? {
        filledCount.wait()
        return state.withLockedValue { s in
            guard s.filledHead < s.filled.count else { return nil }
            let item = s.filled[s.filledHead]
            s.filledHead += 1
            if s.filledHead == s.filled.count {
                s.filled.removeAll(keepingCapacity: true)
                s.filledHead = 0
            }
            return item
        }
    }

    /// No more filled buffers will come: hashers finish what is queued, then stop (each
    /// wakes once more and finds nothing).
    func close() {
        for _ in 0..<hashers { filledCount.signal() }
    }

    func record(_ digest: SHA1Digest, of index: Int) {
        state.withLockedValue { s in
            for (i, b) in digest.bytes.enumerated() { s.digests[index * 20 + i] = b }
        }
    }

    func fail(_ error: StorageError) {
        state.withLockedValue { s in if s.failure == nil { s.failure = error } }
    }

    /// The concatenated digests, or the failure.
    func digests() throws -> [UInt8] {
        try state.withLockedValue { s in
            if let e = s.failure { throw e }
            return s.digests
        }
    }
}

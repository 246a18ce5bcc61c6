import BitTorrent

/// Where a byte span of the torrent's concatenated data lies in its files.
public struct FileSegment: Sendable, Hashable {
    public var fileIndex: Int
    public var fileOffset: Int64
    public var length: Int

    public init(fileIndex: Int, fileOffset: Int64, length: Int) {
        self.fileIndex = fileIndex
        self.fileOffset = fileOffset
        self.length = length
    }
}

/// The files of a torrent laid end to end, as BEP 3 defines pieces over them.
public struct FileLayout: Sendable {
    public let files: [TorrentFile]
    /// Start offset of each file in the concatenated data.
    public let starts: [Int64]
    public let totalLength: Int64

    public init(files: [TorrentFile]) {
        self.files = files
        var starts: [Int64] = []
        var at: Int64 = 0
        for f in files {
            starts.append(at)
            at += f.length
        }
        self.starts = starts
        totalLength = at
    }

    /// The file pieces of `[offset, offset+length)`, skipping zero-length files.
    public func segments(offset: Int64, length: Int) -> [FileSegment] {
        precondition(offset >= 0 && length >= 0 && offset + Int64(length) <= totalLength)
        var out: [FileSegment] = []
        guard length > 0 else { return out }
        // Binary search for the last file starting at or before offset.
        var lo = 0, hi = files.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if starts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        var remaining = Int64(length)
        var pos = offset
        var i = lo
        while remaining > 0, i < files.count {
            let fileEnd = starts[i] + files[i].length
            if files[i].length > 0, pos < fileEnd {
                let n = min(remaining, fileEnd - pos)
                out.append(FileSegment(fileIndex: i, fileOffset: pos - starts[i], length: Int(n)))
                remaining -= n
                pos += n
            }
            i += 1
        }
        return out
    }
}

extension FileLayout {
    /// Reads the span at `offset` from the files' descriptors (`handles[i]` for file i;
    /// nil only for zero-length files).
    func read(offset: Int64, into buffer: UnsafeMutableRawBufferPointer, handles: [FileDescriptor?]) throws {
        _ = try read(offset: offset, into: buffer, handles: handles) { try $0.read(into: $1, at: $2); return true }
    }

    /// `read`, if the page cache holds the whole span (see `FileDescriptor.readIfCached`).
    func readIfCached(offset: Int64, into buffer: UnsafeMutableRawBufferPointer, handles: [FileDescriptor?]) throws -> Bool {
        try read(offset: offset, into: buffer, handles: handles) { try $0.readIfCached(into: $1, at: $2) }
    }

    /// Reads each file's segment of the span with `segment`; false as soon as one returns false.
    private func read(offset: Int64, into buffer: UnsafeMutableRawBufferPointer, handles: [FileDescriptor?],
                      segment: (FileDescriptor, UnsafeMutableRawBufferPointer, Int64) throws -> Bool) throws -> Bool {
        var at = 0
        for seg in segments(offset: offset, length: buffer.count) {
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[at..<(at + seg.length)])
            guard try segment(handles[seg.fileIndex]!, slice, seg.fileOffset) else { return false }
            at += seg.length
        }
        return true
    }

    /// Writes `buffer` at torrent offset `offset` across the files.
    func write(offset: Int64, from buffer: UnsafeRawBufferPointer, handles: [FileDescriptor?]) throws {
        var at = 0
        for seg in segments(offset: offset, length: buffer.count) {
            try handles[seg.fileIndex]!.write(UnsafeRawBufferPointer(rebasing: buffer[at..<(at + seg.length)]), at: seg.fileOffset)
            at += seg.length
        }
    }
}

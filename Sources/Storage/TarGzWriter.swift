import CZlib
#if canImport(Glibc)
import Glibc
#endif

/// Packs a folder into a gzip-compressed tar archive (ustar, GNU long names), streaming
/// through zlib with fixed buffers. Entries are sorted and owned by 0:0 so the same
/// folder gives the same archive.
public enum TarGz {
    public static func pack(folder: String, into output: String, rootName: String) throws {
        let walked = try DirectoryWalker.files(under: folder)
        let out = try FileDescriptor(path: output, flags: O_WRONLY | O_CREAT | O_TRUNC)
        let gz = try GzipStream(output: out)
        var block = [UInt8](repeating: 0, count: 512)
        var written = Set<String>()
        // Folder entries first for each file's parents, so `tar x` recreates modes sensibly.
        func addDirs(_ comps: [String], gz: GzipStream) throws {
            for depth in 0..<comps.count {
                let dir = ([rootName] + comps[0...depth]).joined(separator: "/") + "/"
                if written.insert(dir).inserted {
                    try writeHeader(name: dir, size: 0, mode: 0o755, mtime: 0, type: UInt8(ascii: "5"), into: gz)
                }
            }
        }
        try writeHeader(name: rootName + "/", size: 0, mode: 0o755, mtime: 0, type: UInt8(ascii: "5"), into: gz)
        for f in walked {
            try addDirs(Array(f.relative.dropLast()), gz: gz)
            let name = ([rootName] + f.relative).joined(separator: "/")
            try writeHeader(name: name, size: f.size, mode: f.mode, mtime: f.modificationTime, type: UInt8(ascii: "0"), into: gz)
            let src = try FileDescriptor(path: f.fullPath, flags: O_RDONLY)
            var remaining = f.size
            var offset: Int64 = 0
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            while remaining > 0 {
                let n = Int(min(Int64(chunk.count), remaining))
                try chunk.withUnsafeMutableBytes { (buf) throws in
                    try src.read(into: UnsafeMutableRawBufferPointer(rebasing: buf[0..<n]), at: offset)
                }
                try gz.write(chunk[0..<n])
                offset += Int64(n)
                remaining -= Int64(n)
            }
            let pad = Int((512 - f.size % 512) % 512)
            if pad > 0 { try gz.write(block[0..<pad]) }
        }
        block = [UInt8](repeating: 0, count: 1024)
        try gz.write(block[...])
        try gz.finish()
        try out.sync()
    }

    static func writeHeader(name: String, size: Int64, mode: UInt32, mtime: Int64, type: UInt8,
                            into gz: GzipStream) throws {
        let nameBytes = Array(name.utf8)
        if nameBytes.count > 100 {
            // GNU long name: a 'L' entry whose data is the full name.
            try writeHeader(raw: Array("././@LongLink".utf8), size: Int64(nameBytes.count + 1), mode: 0, mtime: 0,
                            type: UInt8(ascii: "L"), into: gz)
            var data = nameBytes + [0]
            data += [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
            try gz.write(data[...])
            try writeHeader(raw: Array(nameBytes.prefix(100)), size: size, mode: mode, mtime: mtime, type: type, into: gz)
        } else {
            try writeHeader(raw: nameBytes, size: size, mode: mode, mtime: mtime, type: type, into: gz)
        }
    }

    private static func writeHeader(raw name: [UInt8], size: Int64, mode: UInt32, mtime: Int64, type: UInt8,
                                     into gz: GzipStream) throws {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ bytes: [UInt8], at offset: Int) { for (i, b) in bytes.enumerated() { h[offset + i] = b } }
        func octal(_ v: Int64, width: Int) -> [UInt8] {
            let s = String(v, radix: 8)
            return Array((String(repeating: "0", count: max(0, width - 1 - s.count)) + s).utf8) + [0]
        }
        put(name, at: 0)
        put(octal(Int64(mode), width: 8), at: 100)
        put(octal(0, width: 8), at: 108)
        put(octal(0, width: 8), at: 116)
        if size < 0o77777777777 {
            put(octal(size, width: 12), at: 124)
        } else {
            // base-256 for sizes of 8 GiB and more (GNU extension)
            h[124] = 0x80
            for i in 0..<8 { h[135 - i] = UInt8(truncatingIfNeeded: size >> (8 * i)) }
        }
        put(octal(max(0, mtime), width: 12), at: 136)
        put(Array("        ".utf8), at: 148)
        h[156] = type
        put(Array("ustar".utf8) + [0], at: 257)
        put(Array("00".utf8), at: 263)
        let sum = h.reduce(0) { $0 + Int64($1) }
        put(octal(sum, width: 7) + [UInt8(ascii: " ")], at: 148)
        try gz.write(h[...])
    }
}

/// A gzip (RFC 1952) writer over zlib's deflate with a fixed output buffer.
final class GzipStream {
    private var stream = z_stream()
    private let output: FileDescriptor
    private var offset: Int64 = 0
    private var outBuffer = [UInt8](repeating: 0, count: 1 << 18)

    init(output: FileDescriptor, level: Int32 = 6) throws {
        self.output = output
        // deflateInit2 is a C macro; call the function behind it. 15 + 16 = gzip wrapper.
        let rc = deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                               ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else { throw StorageError("zlib: deflateInit2 failed (\(rc))") }
    }

    deinit { deflateEnd(&stream) }

    func write(_ bytes: ArraySlice<UInt8>) throws {
        try bytes.withUnsafeBytes { (buf) throws in try pump(buf, flush: Z_NO_FLUSH) }
    }

    func finish() throws {
        try pump(UnsafeRawBufferPointer(start: nil, count: 0), flush: Z_FINISH)
    }

    private func pump(_ input: UnsafeRawBufferPointer, flush: Int32) throws {
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(input.count)
        while true {
            let produced: Int
            let rc: Int32
            (rc, produced) = outBuffer.withUnsafeMutableBufferPointer { out in
                stream.next_out = out.baseAddress
                stream.avail_out = uInt(out.count)
                let rc = deflate(&stream, flush)
                return (rc, out.count - Int(stream.avail_out))
            }
            guard rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR else {
                throw StorageError("zlib: deflate failed (\(rc))")
            }
            if produced > 0 {
                try outBuffer.withUnsafeBytes { (buf) throws in
                    try output.write(UnsafeRawBufferPointer(rebasing: buf[0..<produced]), at: offset)
                }
                offset += Int64(produced)
            }
            if flush == Z_FINISH {
                if rc == Z_STREAM_END { return }
            } else if stream.avail_in == 0 && stream.avail_out != 0 {
                return
            }
        }
    }
}

import BitTorrent
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// One JSON object per line on standard error (`log_format: json`), for journald or a log
/// shipper: time, level, label, message and metadata.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var line = "{\"ts\":\(ts.tv_sec).\(String(ts.tv_nsec / 1_000_000).leftPadded(3)),\"level\":\"\(event.level)\","
            + "\"logger\":\(JSONText.quote(label)),\"msg\":\(JSONText.quote(event.message.description))"
        for (k, v) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }).sorted(by: { $0.key < $1.key }) {
            line += ",\(JSONText.quote(k)):\(JSONText.quote("\(v)"))"
        }
        Console.writeError(line + "}\n")
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

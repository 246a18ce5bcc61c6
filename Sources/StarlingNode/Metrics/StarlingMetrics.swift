import Prometheus

/// The process's Prometheus registry and the one place metric families are declared.
///
/// swift-prometheus traps when one name is registered with another type, help or label
/// set, so every family is made through these helpers with its help text fixed here.
/// Labels stay bounded: a torrent's short info-hash, a direction, a result; never a peer address.
public enum StarlingMetrics {
    public static let registry = PrometheusCollectorRegistry()

    /// Prometheus text exposition of every metric of the process.
    public static func exposition() -> [UInt8] { registry.emitToBuffer() }

    public static func counter(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Counter {
        registry.makeCounter(descriptor: descriptor(name, help), labels: labels)
    }

    public static func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Gauge {
        registry.makeGauge(descriptor: descriptor(name, help), labels: labels)
    }

    public static func histogram(_ name: String, _ help: String, buckets: [Double],
                                 _ labels: [(String, String)] = []) -> ValueHistogram {
        registry.makeValueHistogram(descriptor: descriptor(name, help), labels: labels, buckets: buckets)
    }

    /// `name` is the full metric name without the `starling_` prefix, unit included (e.g. `bytes_total`).
    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "starling", metricName: name, unitName: "", helpText: help)
    }
}

/// Registers `starling_build_info{version=...} 1`.
public enum BuildInfo {
    public static func register(version: String) {
        StarlingMetrics.gauge("build_info", "Starling build information; always 1.", [("version", version)]).set(to: 1)
    }
}

import Foundation
import TestSupport
import Testing

/// Zabbix 6.0 for real: tests/zabbix/run_zabbix_test.sh starts Debian's Zabbix server with
/// PostgreSQL and the PHP frontend, imports config/zabbix/starling_template.yaml through the
/// API, registers 9 namespace hosts with an agent each, and runs three rollouts of 64 MiB to
/// 8 of them: under `--max-change 5mbit/10s` the template's interface-change trigger (> 5
/// Mbit/s between two 10-s samples) and every other trigger stay quiet; with only a level cap
/// (`--up-rate 20mbit`) and with a central HTTP copy it fires. While the nodes run, every item
/// of both templates has data and none is unsupported.
@Suite(.serialized, .tags(.endToEnd))
struct ZabbixTests {
    static let script = TestPaths.packageRoot.appendingPathComponent("tests/zabbix/run_zabbix_test.sh").path
    static let ready = getuid() == 0 && TestPaths.which("ip") != nil && TestPaths.which("jq") != nil
        && FileManager.default.isExecutableFile(atPath: "/usr/sbin/zabbix_server")
        && FileManager.default.isExecutableFile(atPath: "/usr/sbin/zabbix_agentd")
        && FileManager.default.isExecutableFile(atPath: "/usr/sbin/apache2")

    @Test(.enabled(if: ready, "needs root, iproute2, jq, zabbix-server-pgsql, zabbix-agent, zabbix-frontend-php, apache2 (bash scripts/install-deps.sh)"))
    func changeTriggerQuietUnderMaxChangeOnly() async throws {
        var env = ProcessInfo.processInfo.environment
        env["STARLING_BIN"] = TestPaths.starling
        // The script bounds its own steps (about 5 minutes, the first run 1 more for the
        // database); the timeout is the backstop.
        let run = try await TestScript.run(Self.script, environment: env, scratch: "zabbix", timeout: 900)
        let output = run.output
        print(output.split(separator: "\n").filter { $0.hasPrefix("[zabbix-test") || $0.hasPrefix("ZABBIX_RESULTS") }.joined(separator: "\n"))
        #expect(run.status == 0, "run_zabbix_test.sh failed:\n\(output.suffix(6000))")
        #expect(output.contains("ZABBIX_RESULTS interval="))
    }
}

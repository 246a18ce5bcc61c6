import Foundation
import TestSupport
import Testing

/// ansible/rollout.yml over real SSH: tests/ansible/run_rollout_test.sh builds 12 hosts in
/// network namespaces (each with its own root and sshd, links shaped to 100mbit), installs
/// the .deb from dist/ on each and pushes a 32 MiB artifact to 11 peers with rollout.yml,
/// checks every sha256, that the processes stopped and the scratch files are gone, pushes a
/// second artifact to the installed fleet (timed), reruns with one host's sshd stopped (that
/// host must be named, the others must finish), and times `ansible -m copy` of the same file.
@Suite(.serialized, .tags(.endToEnd))
struct AnsibleRolloutTests {
    static let script = TestPaths.packageRoot.appendingPathComponent("tests/ansible/run_rollout_test.sh").path
    static let ready = getuid() == 0 && TestPaths.which("ip") != nil
        && FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd")
        && TestPaths.which("ansible-playbook") != nil && TestPaths.which("ansible") != nil

    @Test(.enabled(if: ready, "needs root, iproute2, openssh-server and ansible-core"))
    func rolloutOverSSHInNamespaces() async throws {
        let env = ProcessInfo.processInfo.environment
        // The script bounds its own steps; the timeout is the backstop.
        let run = try await TestScript.run(Self.script, environment: env, scratch: "ansible-rollout", timeout: 720)
        let output = run.output
        let times = output.split(separator: "\n").filter { $0.hasPrefix("ROLLOUT_TIMES") || $0.hasPrefix("push of") || $0.hasPrefix("  ") || $0.hasPrefix("the first") }
        print(times.joined(separator: "\n"))
        #expect(run.status == 0, "run_rollout_test.sh failed:\n\(output.suffix(6000))")
        #expect(output.contains("ROLLOUT_TIMES starling="))
    }
}

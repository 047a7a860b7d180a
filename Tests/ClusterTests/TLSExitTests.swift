import Testing

/// A process that exits while other threads are inside OpenSSL exits cleanly: KVTLS turns off
/// OpenSSL's clean-up at exit (`OpenSSL.start()`), which freed what those threads still used. `kvctl`
/// exits so whenever its event loops free a closed connection's `SSL` after the command returned;
/// it then died of SIGSEGV (exit status 139) after printing its answer, rarely, since that moment is
/// short. `kvtls-probe` keeps two threads handshaking while it exits: with the clean-up on, about
/// half its runs crash.
@Suite(.timeLimit(.minutes(3)))
struct TLSExitTests {
    @Test func exitingWhileThreadsAreInOpenSSLIsClean() throws {
        for attempt in 1...40 {
            let result = try run("kvtls-probe", ["20"], timeout: .seconds(30))
            #expect(result.status == 0, "run \(attempt): exit status \(result.status); stderr: \(result.stderr)")
            if result.status != 0 { return }
        }
    }
}

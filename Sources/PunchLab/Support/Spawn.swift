import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Process {
    /// Starts the process with no signal blocked.
    ///
    /// A child inherits the signal mask of the thread that starts it, and Swift concurrency's
    /// and Dispatch's worker threads block almost every signal: a program started from a test
    /// or an async command would ignore SIGTERM for ever (its `stop()` would always wait for
    /// the SIGKILL). So the mask is cleared on this thread just while the child is created.
    func runWithSignalsUnblocked() throws {
        var empty = sigset_t()
        var saved = sigset_t()
        sigemptyset(&empty)
        pthread_sigmask(SIG_SETMASK, &empty, &saved)
        defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
        try run()
    }
}

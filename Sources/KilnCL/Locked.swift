import Glibc

/// A value reached only under a pthread mutex. Kiln uses it rather than `Synchronization.Mutex`, which
/// ThreadSanitizer on Linux does not model: it reports races inside `withLock` on correct code, which would
/// bury real reports. One lock per value; `withLock` is not reentrant.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    // Behind a pointer rather than a stored property: Swift's exclusivity checks would otherwise report
    // accesses to a zero-sized value (a bare lock, `Locked(())`) at the object's own address.
    private let storage: UnsafeMutablePointer<Value>

    public init(_ value: Value) {
        storage = .allocate(capacity: 1)
        storage.initialize(to: value)
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        storage.deinitialize(count: 1)
        storage.deallocate()
    }

    /// Runs `body` with the value while holding the lock.
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&storage.pointee)
    }
}

import Synchronization

/// Delivers each published event to every subscriber, each through its own bounded buffer.
///
/// A subscriber that falls behind loses events only past its buffer, and then receives one
/// `dropped(count)` marker at the place the loss happened, never a silent gap; the other
/// subscribers are unaffected. ``PunchNode/events`` is built on it.
final class EventBroadcaster<Event: Sendable>: Sendable {
    /// What a subscriber reads: an event, or how many it missed.
    enum Delivery: Sendable {
        case event(Event)
        case dropped(Int)
    }

    private struct Subscriber {
        var buffer: [Delivery] = []
        var head = 0
        var dropped = 0
        var waiter: CheckedContinuation<Delivery?, Never>?
        var count: Int { buffer.count - head }
    }

    private struct State {
        var subscribers: [Int: Subscriber] = [:]
        var nextID = 0
        var finished = false
        /// Events dropped for any subscriber since ``takeDroppedCount()`` last ran.
        var droppedSinceTaken = 0
    }

    /// The most undelivered entries per subscriber (at least 2: an event and a drop marker).
    let bufferLimit: Int
    private let state = Mutex(State())

    init(bufferLimit: Int) {
        self.bufferLimit = max(2, bufferLimit)
    }

    /// The number of subscribers now.
    var subscriberCount: Int { state.withLock { $0.subscribers.count } }

    /// Events dropped (for any subscriber) since the last call; for the drop metric.
    func takeDroppedCount() -> Int {
        state.withLock { state in
            defer { state.droppedSinceTaken = 0 }
            return state.droppedSinceTaken
        }
    }

    /// Registers a subscriber; events published from now on reach it.
    func subscribe() -> Int {
        state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            if !state.finished { state.subscribers[id] = Subscriber() }
            return id
        }
    }

    /// Forgets a subscriber (its iterator was dropped, or its task cancelled).
    func unsubscribe(_ id: Int) {
        let waiter = state.withLock { state in state.subscribers.removeValue(forKey: id)?.waiter }
        waiter?.resume(returning: nil)
    }

    /// Publishes `event` to every subscriber.
    func publish(_ event: Event) {
        var resumes: [(CheckedContinuation<Delivery?, Never>, Delivery)] = []
        state.withLock { state in
            guard !state.finished else { return }
            for id in state.subscribers.keys {
                var subscriber = state.subscribers[id]!
                if let waiter = subscriber.waiter {
                    // A reader is waiting, so its buffer is empty.
                    subscriber.waiter = nil
                    if subscriber.dropped > 0 {
                        resumes.append((waiter, .dropped(subscriber.dropped)))
                        subscriber.dropped = 0
                        subscriber.buffer.append(.event(event))
                    } else {
                        resumes.append((waiter, .event(event)))
                    }
                } else if subscriber.dropped > 0 {
                    // The marker goes in first, where the gap is; it needs room with the event.
                    if subscriber.count + 2 <= bufferLimit {
                        subscriber.buffer.append(.dropped(subscriber.dropped))
                        subscriber.buffer.append(.event(event))
                        subscriber.dropped = 0
                    } else {
                        subscriber.dropped += 1
                        state.droppedSinceTaken += 1
                    }
                } else if subscriber.count < bufferLimit {
                    subscriber.buffer.append(.event(event))
                } else {
                    subscriber.dropped = 1
                    state.droppedSinceTaken += 1
                }
                state.subscribers[id] = subscriber
            }
        }
        for (waiter, delivery) in resumes { waiter.resume(returning: delivery) }
    }

    /// Ends every subscription: readers get what is buffered (and a final drop marker), then `nil`.
    func finish() {
        let waiters = state.withLock { state -> [CheckedContinuation<Delivery?, Never>] in
            state.finished = true
            var waiters: [CheckedContinuation<Delivery?, Never>] = []
            for id in state.subscribers.keys {
                if let waiter = state.subscribers[id]!.waiter { waiters.append(waiter) }
                state.subscribers[id]!.waiter = nil
            }
            return waiters
        }
        for waiter in waiters { waiter.resume(returning: nil) }
    }

    /// The next delivery for subscriber `id`; `nil` once finished (after its buffer is read) or
    /// cancelled.
    func next(_ id: Int) async -> Delivery? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Delivery?, Never>) in
                let immediate: Delivery?? = state.withLock { state in
                    guard var subscriber = state.subscribers[id] else { return .some(nil) }
                    defer { state.subscribers[id] = subscriber }
                    if subscriber.count > 0 {
                        let delivery = subscriber.buffer[subscriber.head]
                        subscriber.head += 1
                        if subscriber.head > 64, subscriber.head * 2 > subscriber.buffer.count {
                            subscriber.buffer.removeFirst(subscriber.head)
                            subscriber.head = 0
                        }
                        return .some(delivery)
                    }
                    if subscriber.dropped > 0 {
                        let count = subscriber.dropped
                        subscriber.dropped = 0
                        return .some(.dropped(count))
                    }
                    if state.finished { return .some(nil) }
                    if Task.isCancelled { return .some(nil) }
                    subscriber.waiter = continuation
                    return .none
                }
                if case .some(let delivery) = immediate { continuation.resume(returning: delivery) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Delivery?, Never>? in
                defer { state.subscribers[id]?.waiter = nil }
                return state.subscribers[id]?.waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}

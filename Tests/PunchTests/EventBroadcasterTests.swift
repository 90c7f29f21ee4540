import Testing

@testable import Punch

@Suite struct EventBroadcasterTests {
    @Test func aSubscriberThatFallsBehindGetsOneDropMarkerWhereItMissedEvents() async {
        let broadcaster = EventBroadcaster<Int>(bufferLimit: 4)
        let slow = broadcaster.subscribe()
        let fast = broadcaster.subscribe()
        var fastSeen: [Int] = []
        for value in 0..<10 {
            broadcaster.publish(value)
            if case .event(let seen)? = await broadcaster.next(fast) { fastSeen.append(seen) }
        }
        #expect(fastSeen == Array(0..<10))
        // The slow one kept the first four, then lost six.
        var slowSeen: [String] = []
        for _ in 0..<5 {
            switch await broadcaster.next(slow) {
            case .event(let value)?: slowSeen.append("\(value)")
            case .dropped(let count)?: slowSeen.append("dropped \(count)")
            case nil: slowSeen.append("end")
            }
        }
        #expect(slowSeen == ["0", "1", "2", "3", "dropped 6"])
        #expect(broadcaster.takeDroppedCount() == 6)
        // Once it has room again, new events follow the marker in order.
        broadcaster.publish(10)
        if case .event(let value)? = await broadcaster.next(slow) { #expect(value == 10) } else { Issue.record("expected 10") }
    }

    @Test func aMarkerGoesInBeforeTheNextEventWhenThereIsRoom() async {
        let broadcaster = EventBroadcaster<Int>(bufferLimit: 3)
        let id = broadcaster.subscribe()
        for value in 0..<5 { broadcaster.publish(value) }  // 0 1 2 kept, 3 4 dropped
        _ = await broadcaster.next(id)
        _ = await broadcaster.next(id)  // room for a marker and an event now
        broadcaster.publish(5)
        var rest: [String] = []
        for _ in 0..<3 {
            switch await broadcaster.next(id) {
            case .event(let value)?: rest.append("\(value)")
            case .dropped(let count)?: rest.append("dropped \(count)")
            case nil: rest.append("end")
            }
        }
        #expect(rest == ["2", "dropped 2", "5"])
    }

    @Test func finishingEndsEverySubscriptionAfterItsBuffer() async {
        let broadcaster = EventBroadcaster<Int>(bufferLimit: 8)
        let id = broadcaster.subscribe()
        let waiting = Task { await broadcaster.next(broadcaster.subscribe()) }
        broadcaster.publish(1)
        broadcaster.finish()
        if case .event(1)? = await broadcaster.next(id) {} else { Issue.record("expected the buffered event") }
        let last = await broadcaster.next(id)
        #expect(last == nil)
        _ = await waiting.value
    }
}

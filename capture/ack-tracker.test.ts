import { AckTracker } from './ack-tracker';

describe('AckTracker', () => {
  it('confirms a commit only after the flush that carried it finished', () => {
    const acks = new AckTracker('0/100');
    acks.begin();
    acks.commit('0/200');
    const token = acks.startFlush();
    expect(acks.confirmed).toBe('0/100');
    expect(acks.finishFlush(token)).toBe('0/200');
    expect(acks.confirmed).toBe('0/200');
  });

  it('does not confirm a transaction still open when the flush started', () => {
    const acks = new AckTracker('0/100');
    acks.begin();
    acks.commit('0/200');
    acks.begin(); // a large transaction, partly flushed
    const token = acks.startFlush();
    expect(acks.finishFlush(token)).toBe('0/200');
    acks.commit('0/900');
    expect(acks.confirmed).toBe('0/200');
    expect(acks.finishFlush(acks.startFlush())).toBe('0/900');
  });

  it('never moves backwards', () => {
    const acks = new AckTracker('0/500');
    acks.begin();
    acks.commit('0/400');
    expect(acks.finishFlush(acks.startFlush())).toBeNull();
    expect(acks.confirmed).toBe('0/500');
  });

  it('echoes a keepalive WAL end only when nothing is in flight', () => {
    const acks = new AckTracker('0/100');
    expect(acks.keepalive('0/300', true, false)).toBe('0/300');

    acks.begin();
    expect(acks.keepalive('0/400', true, false)).toBeNull(); // transaction open
    acks.commit('0/450');
    expect(acks.keepalive('0/500', false, false)).toBeNull(); // changes buffered
    const token = acks.startFlush();
    expect(acks.keepalive('0/500', true, false)).toBeNull(); // flush in flight
    expect(acks.flushesInFlight).toBe(1);
    expect(acks.finishFlush(token)).toBe('0/450');
    expect(acks.keepalive('0/500', true, false)).toBe('0/500');
  });

  it('answers a reply request with the durable position even when busy', () => {
    const acks = new AckTracker('0/100');
    acks.begin();
    expect(acks.keepalive('0/900', false, true)).toBe('0/100');
    expect(acks.keepalive('0/900', false, false)).toBeNull();
  });

  it('does not echo a keepalive behind the durable position', () => {
    const acks = new AckTracker('0/100');
    expect(acks.keepalive('0/50', true, false)).toBeNull();
    expect(acks.keepalive('0/50', true, true)).toBe('0/100');
  });
});

// The fills in flight of one process, by key, and who leads each. In a multi-process
// cache the workers settle who fills a key through its claim file (DiskStore.claimFill):
// no message on the miss path. A worker that finds the file taken asks the others which
// of them has the fill, and follows it (remote-fill.ts).
import type { FastifyBaseLogger as Logger } from 'fastify';
import type { DiskStore } from './disk-store.js';
import { Fill, type FillHooks, type FillSpec } from './fill.js';
import type { FillSource } from './fill-progress.js';
import { FillFileGoneError, FillGoneError, FillNotWholeError, FillUnfollowableError, RemoteFill } from './remote-fill.js';

/** How a fill this process starts is led: who is told its outcome, and what its first request asks for. */
type LeadHooks = Omit<FillHooks, 'claim' | 'ended'>;

/** A fill to serve: one this process leads, or one it joins (its own, or another worker's). */
type Acquired = { readonly fill: FillSource; readonly lead: boolean };

/** The in-flight map: one fill per key until it is done. */
export class Fills {
  #map = new Map<string, FillSource>();
  /**
   * The fill of this process holding each key's claim, until it ends: also one no longer
   * joined, whose disk failed mid-way (see Fill.joinable). Its claim is never taken for a
   * dead worker's, and `drain` waits for it even once another fill of the key replaced it
   * in the map.
   */
  #claimHolders = new Map<string, Fill>();
  #store: DiskStore;
  #log: Logger;
  /** The fill sockets of the other workers (none in a single process). */
  #peers: readonly string[];
  /** Searches for another worker's fill in progress: concurrent local requests share one. */
  #finding = new Map<string, Promise<FillSource | undefined>>();
  #leading = 0;
  #cut = 0;
  /** Told when a fill this process leads starts or ends. */
  #onLeading: () => void;
  /** Given to the fills this process leads (see CacheConfig.unreadGraceMs); undefined: their default. */
  readonly #unreadGraceMs: number | undefined;

  constructor(store: DiskStore, log: Logger, peers: readonly string[] = [], onLeading: () => void = () => undefined, unreadGraceMs?: number) {
    this.#store = store;
    this.#log = log;
    this.#peers = peers;
    this.#onLeading = onLeading;
    this.#unreadGraceMs = unreadGraceMs;
  }

  get size(): number {
    return this.#map.size;
  }

  /** Fills this process leads (another worker's that it follows are not counted). */
  get leading(): number {
    return this.#leading;
  }

  /**
   * The fill in flight for `key`; a failed one is never joined (the next request starts
   * anew), nor one kept in memory only whose first bytes may soon be gone, nor one ended
   * whose answer is not kept (see Fill.joinable).
   */
  get(key: string): FillSource | undefined {
    const fill = this.#map.get(key);
    return fill && !fill.error && fill.joinable ? fill : undefined;
  }

  /**
   * The fill of `key` to serve: the one in flight here, a new one this process leads
   * (its claim taken), or another worker's. Undefined when none can be had: another
   * worker's fill ended meanwhile (the entry may be stored now) or its worker is gone.
   * Throws StorageError when the disk refuses the claim. `partial`: the request asks for
   * part of the body (see FillHooks.partial).
   */
  async acquire(key: string, spec: FillSpec, partial = false): Promise<Acquired | undefined> {
    const local = this.get(key);
    if (local) return { fill: local, lead: false };
    // While the disk refuses writes no claim can be made: a fill of this process's own
    // still gathers a small body once for all its waiters (and keeps nothing, see Fill).
    if (this.#store.isFull()) return { fill: this.start(key, spec, { partial }), lead: true };
    // This process holds the claim with a fill no longer joined: the request passes through.
    const holder = this.#claimHolders.get(key);
    if (holder && !holder.error) return undefined;
    const led = this.lead(key, spec, { partial });
    if (led) return { fill: led, lead: true };
    let finding = this.#finding.get(key);
    if (!finding) {
      finding = this.#findElsewhere(key, spec.id);
      this.#finding.set(key, finding);
      void finding.finally(() => this.#finding.delete(key));
    }
    const other = await finding;
    return other ? { fill: other, lead: false } : undefined;
  }

  /**
   * Claims `key` and starts its fill; undefined when the claim is taken (another worker
   * fills it). Throws StorageError when the disk refuses the claim.
   */
  lead(key: string, spec: FillSpec, hooks: LeadHooks = {}): Fill | undefined {
    const claim = this.#store.claimFill(spec.id, key);
    if (!claim) return undefined;
    const fill = this.start(key, spec, { claim, leader: hooks.leader, leaderRequest: hooks.leaderRequest, partial: hooks.partial });
    this.#claimHolders.set(key, fill);
    return fill;
  }

  /** The fill of this process that holds the claim of `key`, while it runs. */
  claimHolder(key: string): Fill | undefined {
    return this.#claimHolders.get(key);
  }

  /** Makes `fill` the one local requests for `key` join until it is done. */
  track<F extends FillSource>(key: string, fill: F): F {
    this.#map.set(key, fill);
    void fill.done.finally(() => {
      if (this.#map.get(key) === fill) this.#map.delete(key);
    });
    return fill;
  }

  /**
   * Starts a fill of `key` (with its claim, or a temp file of its own: a revalidated entry
   * replaced). Its end is told by a hook, not a promise: on a cold small miss, each
   * promise chained to a fill was a measurable share of the miss.
   */
  start(key: string, spec: FillSpec, hooks: Omit<FillHooks, 'ended'> = {}): Fill {
    this.#leading++;
    this.#onLeading();
    const fill = new Fill(this.#store, this.#log, spec, { claim: hooks.claim, leader: hooks.leader, leaderRequest: hooks.leaderRequest, partial: hooks.partial, ended: (f) => this.#ended(key, f), cut: () => this.#cut++ }, this.#unreadGraceMs);
    this.#map.set(key, fill);
    return fill;
  }

  /** Fills of this process that failed after their answer began (see FillHooks.cut). */
  get cut(): number {
    return this.#cut;
  }

  #ended(key: string, fill: Fill): void {
    if (this.#map.get(key) === fill) this.#map.delete(key);
    if (this.#claimHolders.get(key) === fill) this.#claimHolders.delete(key);
    this.#leading--;
    this.#onLeading();
  }

  async drain(): Promise<void> {
    await Promise.all([...new Set([...this.#map.values(), ...this.#claimHolders.values()])].map((f) => f.done));
  }

  /**
   * The fill of `key` in this process that has its whole body and keeps it (its commit
   * under way): for a request that takes nothing but a stored copy (only-if-cached), it
   * answers as the copy will. One whose answer is not kept (an upstream 404, a private
   * answer, a body larger than the cache) never is: nothing will be stored.
   */
  received(key: string): Fill | undefined {
    const fill = this.#map.get(key);
    return fill instanceof Fill && fill.ended && fill.keeps ? fill : undefined;
  }

  /**
   * The fill of `key` (an entry of `id`) that has its whole body and keeps it (see
   * received), this process's or another worker's, for a request that takes nothing but a
   * stored copy (only-if-cached): until the commit, the disk has no entry to find. A fill
   * this process leads is the only one. Only a fill holding the key's claim can have it:
   * with no claim on disk, nobody is asked (most such requests are push's probes of bases a
   * region lacks, given 2 s, and a stuck worker answers only when its question times out).
   * Else every other worker is asked at once (this process may follow one's fill, but only
   * its leader knows whether it keeps it), and the first that has it is followed, the others
   * no longer waited for. The search also ends, with nothing, when the claim's holder says
   * its body is not whole, or it had it and its file was renamed into place before it could
   * be opened, or when the claim is gone after any answer (the fill ended since: the caller
   * looks on disk again). Nothing else is concluded from the answers (a claim none answers
   * for is left to #findElsewhere). Not tracked: a request that may fill must not join a
   * search that fails for a fill still running.
   */
  async findReceived(key: string, id: string): Promise<FillSource | undefined> {
    if (this.#map.get(key) instanceof Fill) return this.received(key);
    if (!this.#store.isClaimed(id, key)) return undefined;
    const remotes = this.#peers.map((socket) => new RemoteFill(socket, key, true));
    const searchEnds = (err: unknown): undefined => {
      if (err instanceof FillFileGoneError || err instanceof FillNotWholeError || !this.#store.isClaimed(id, key)) return undefined;
      throw err;
    };
    const found = await Promise.any(remotes.map((r) => r.head.then(() => r, searchEnds))).catch(() => undefined);
    for (const r of remotes) if (r !== found) r.abandon();
    return found;
  }

  /**
   * Asks every other worker at once for its fill of `key` (one worker leads a key at a
   * time: the others answer 404 at once), and follows the one that has it. When none has
   * it and the claim file is older than the question, its worker died mid-fill: the file
   * is removed, so that the next request fills.
   */
  async #findElsewhere(key: string, id: string): Promise<FillSource | undefined> {
    const asked = Date.now();
    const remotes = this.#peers.map((socket) => new RemoteFill(socket, key));
    // A fill that failed is followed too (its waiters see the failure), one going on first.
    const outcomes = await Promise.all(remotes.map((r) => r.head.then(
      () => 'going',
      (err: unknown) => (err instanceof FillUnfollowableError ? 'unfollowable' : err instanceof FillGoneError ? 'gone' : 'failed'),
    )));
    const going = outcomes.indexOf('going');
    const found = going >= 0 ? going : outcomes.indexOf('failed');
    if (found >= 0) return this.track(key, remotes[found]!);
    // A leader that is there but cannot be followed keeps its claim; the request passes through.
    if (!outcomes.includes('unfollowable')) this.#store.dropOrphanClaim(id, key, asked - ORPHAN_MARGIN_MS);
    return undefined;
  }
}

/** A claim file last written this long before every worker said it has no such fill is an orphan. */
const ORPHAN_MARGIN_MS = 1000;

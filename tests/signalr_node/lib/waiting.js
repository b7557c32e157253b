/**
 * Waiting for things the hub or the client will do, each wait bounded.
 *
 * Rule: a case waits for an event (a callback, a promise), never for time to pass, except
 * where time passing is the behaviour under test (the idle case) or where the server offers
 * no event to wait for (a count that changes after a disconnect), and then `eventually`
 * bounds the wait and names what never happened.
 */

/** A promise with its resolve and reject at hand. */
export class Deferred {
    constructor() {
        this.promise = new Promise((resolve, reject) => {
            this.resolve = resolve;
            this.reject = reject;
        });
    }
}

/** `promise`'s value, or an error naming `what` if it takes longer than `ms`. */
export async function within(ms, promise, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
    });
    try {
        return await Promise.race([promise, timeout]);
    } finally {
        clearTimeout(timer);
    }
}

/** Resolves after `ms`: only for cases whose subject is time passing. */
export function pause(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Asks `probe()` again every `interval` ms until `accept(value)` holds, for at most `ms`.
 *
 * Returns the accepted value; fails with the last value seen and `what` was awaited.
 */
export async function eventually(probe, accept, what, { ms = 5000, interval = 50 } = {}) {
    const deadline = Date.now() + ms;
    for (;;) {
        const value = await probe();
        if (accept(value)) {
            return value;
        }
        if (Date.now() > deadline) {
            throw new Error(`${what} did not happen within ${ms} ms (last value: ${JSON.stringify(value)})`);
        }
        await pause(interval);
    }
}

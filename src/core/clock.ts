/** The source of "now" for everything that checks time; tests inject a fixed or stepping one. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

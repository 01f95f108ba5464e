export { type CheckOptions, type CheckResult, checkHistory, summarize } from "./check.ts";
export type { Attempt, History, ReadRecord, VisitRecord, Window } from "./history.ts";
export { acknowledgement, now } from "./history.ts";
export { type Fetch, startVisitors, type VisitorOptions } from "./visitors.ts";

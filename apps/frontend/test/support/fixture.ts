// What globalSetup (global-setup.ts) made once for every test file: the image, a network
// where a fake backend and a fake counter answer as "backend" and "counter", and a
// frontend with the image's defaults there (RATE_LIMIT=on, no TLS, no trusted proxy).
import { inject } from "vitest";
import { fakeAt } from "./fakes.ts";

export const IMAGE = inject("frontendImage");
export const network = inject("network");
export const frontend = inject("frontend");
export const backend = fakeAt(inject("backend"));
export const counter = fakeAt(inject("counter"));

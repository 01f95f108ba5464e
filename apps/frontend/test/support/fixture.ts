// What globalSetup (global-setup.ts) made once for every test file: the image, and a
// network where a fake backend and a fake counter answer as "backend" and "counter".
import { inject } from "vitest";
import { fakeAt } from "./fakes.ts";

export const IMAGE = inject("frontendImage");
export const network = inject("network");
export const backend = fakeAt(inject("backend"));
export const counter = fakeAt(inject("counter"));

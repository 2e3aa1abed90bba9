// Every device kind the guest can measure, by the name common.ts gives it. A new kind adds its
// GuestKind module here and its BenchKind entry in common.ts.
import type { GuestKind } from "../device.js";
import { loopKind, nullKind, ramKind } from "./basic.js";
import { nbdKind } from "./nbd.js";
import { qcow2Kind } from "./qcow2.js";
import { stripeKind } from "./stripe.js";

export const GUEST_KINDS: Record<string, GuestKind> = {
  null: nullKind,
  loop: loopKind,
  ram: ramKind,
  stripe: stripeKind,
  nbd: nbdKind,
  qcow2: qcow2Kind,
};

// The built-in qcow2 target lives in ./qcow2/; the registry loads built-ins as ./NAME.js.
export { default } from "./qcow2/target.js";

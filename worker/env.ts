// The Worker's environment: the global Cloudflare.Env of types/env.d.ts.
export type Env = Cloudflare.Env;

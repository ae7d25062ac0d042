// What a route handler receives: itty-router's request with `params` and `query`.
import type { IRequest } from "itty-router";

export type ApiRequest = IRequest;

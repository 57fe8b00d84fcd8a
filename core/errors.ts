import type { z } from "zod";

/** An error meant for a person: printed as its message alone, never as a stack trace. */
export class UserError extends Error {
  constructor(message: string, readonly code = "user_error") {
    super(message);
    this.name = "UserError";
  }
}

/** One line per problem: `path.to.field: what was expected`. */
export function formatZodError(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.length ? issue.path.map(String).join(".") : "(root)";
      return `${path}: ${issue.message}`;
    })
    .join("; ");
}

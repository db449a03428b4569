// Text made safe to put in HTML, between tags or in a quoted attribute: the report's page and
// the dashboard's title.

/** `text` with & < > " ' as character references. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

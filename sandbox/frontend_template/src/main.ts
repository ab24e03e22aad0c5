interface WorkOrder {
  id: number;
  site_name: string;
  status: string;
}

const app = document.querySelector<HTMLDivElement>("#app");

function render(orders: WorkOrder[]): string {
  const rows = orders.map((o) => `<li>${o.id}: ${o.site_name} (${o.status})</li>`).join("");
  return `<h1>FossaWork V2</h1><p>Fuel dispenser work orders</p><ul>${rows}</ul>`;
}

if (app) {
  app.innerHTML = render([]);
}

"""SocialHub's Inbox API (custom channels): app messages become tickets, agents' replies come
back as signed ``ticket_action`` webhook events. The platform is its manifest
(``mappings/socialhub.yaml``); this folder holds the simulator and the demo scenario."""

// The admin's navigation sidebar starts closed, so the lists get the page's width; « opens it, and
// Django's own script (admin/js/nav_sidebar.js, which runs after this) remembers the choice.
"use strict";
if (window.localStorage && localStorage.getItem("django.admin.navSidebarIsOpen") === null) {
    localStorage.setItem("django.admin.navSidebarIsOpen", "false");
}

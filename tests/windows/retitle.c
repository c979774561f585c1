/*
 * A plain Win32 window for the Wine tests: `retitle.exe FIRST [SECOND]` opens a window titled
 * FIRST, brings it to the front and, two seconds later, retitles it SECOND (the way a browser
 * or an editor changes its title). It stays open until closed, or for ten minutes.
 */
#include <windows.h>
#include <shellapi.h>

static const wchar_t *second_title;

static LRESULT CALLBACK window_proc(HWND window, UINT message, WPARAM wparam, LPARAM lparam)
{
    switch (message) {
    case WM_TIMER:
        KillTimer(window, wparam);
        if (wparam == 1 && second_title)
            SetWindowTextW(window, second_title);
        else if (wparam == 2)
            DestroyWindow(window);
        return 0;
    case WM_DESTROY:
        PostQuitMessage(0);
        return 0;
    }
    return DefWindowProcW(window, message, wparam, lparam);
}

int WINAPI wWinMain(HINSTANCE instance, HINSTANCE previous, PWSTR command_line, int show)
{
    (void)previous;
    (void)command_line;
    int argc = 0;
    wchar_t **argv = CommandLineToArgvW(GetCommandLineW(), &argc);
    if (!argv || argc < 2)
        return 2;
    second_title = argc > 2 ? argv[2] : NULL;
    WNDCLASSW class = {0};
    class.lpfnWndProc = window_proc;
    class.hInstance = instance;
    class.hCursor = LoadCursor(NULL, IDC_ARROW);
    class.hbrBackground = (HBRUSH)(COLOR_WINDOW + 1);
    class.lpszClassName = L"TutelaTestWindow";
    RegisterClassW(&class);
    HWND window = CreateWindowExW(0, class.lpszClassName, argv[1], WS_OVERLAPPEDWINDOW,
                                  100, 100, 640, 400, NULL, NULL, instance, NULL);
    if (!window)
        return 1;
    ShowWindow(window, show ? show : SW_SHOW);
    SetForegroundWindow(window);
    SetTimer(window, 1, 2000, NULL);
    SetTimer(window, 2, 600000, NULL);
    MSG message;
    while (GetMessageW(&message, NULL, 0, 0) > 0) {
        TranslateMessage(&message);
        DispatchMessageW(&message);
    }
    return 0;
}
